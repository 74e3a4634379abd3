/* SPDX-License-Identifier: MIT */
/* watch: tells when one of a set of files, or any Lua file in their folders, changes. Watches
 * the folders with inotify, so an editor that saves by renaming a new file over the old one is
 * seen like a plain write.
 * Uses: inotify, log. */
#ifndef SB_WATCH_H
#define SB_WATCH_H

#include <stddef.h>

struct watch;

struct watch *watch_new(char *err, size_t errlen);
void watch_free(struct watch *w);
/* Readable when events are pending: then call watch_changed. */
int watch_fd(const struct watch *w);
/* Replace the watched set with `files` (absolute paths, copied) without a gap: folders watched
 * before and still needed stay watched. Returns 0 or -1 (logged). */
int watch_set(struct watch *w, char *const *files, size_t count);
/* Read the pending events; returns 1 when a watched file was written, created, replaced or
 * removed (the first such path is logged at debug level). The paths are remembered until
 * watch_take_changes. */
int watch_changed(struct watch *w);
/* The files that changed since the last call, "/p/a.lua, /p/b.lua" (at most 8 named, then
 * "and N more"), into out; forgets them. Returns how many changed. */
size_t watch_take_changes(struct watch *w, char *out, size_t size);

#endif
