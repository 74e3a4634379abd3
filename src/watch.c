/* SPDX-License-Identifier: MIT */
/* watch: see watch.h. */
#include "watch.h"

#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

struct watched_dir {
    int wd;
    char *path;
};

#define MAX_CHANGES_NAMED 8

struct watch {
    int fd;
    char **files;
    size_t file_count;
    struct watched_dir *dirs;
    size_t dir_count;
    char *changes[MAX_CHANGES_NAMED]; /* distinct paths changed since watch_take_changes */
    size_t change_count;              /* may exceed the names kept */
};

struct watch *watch_new(char *err, size_t errlen)
{
    struct watch *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0) {
        snprintf(err, errlen, "cannot watch the scripts (inotify): %s", strerror(errno));
        free(w);
        return NULL;
    }
    return w;
}

static void clear(struct watch *w)
{
    for (size_t i = 0; i < w->dir_count; i++) {
        inotify_rm_watch(w->fd, w->dirs[i].wd);
        free(w->dirs[i].path);
    }
    free(w->dirs);
    w->dirs = NULL;
    w->dir_count = 0;
    for (size_t i = 0; i < w->file_count; i++)
        free(w->files[i]);
    free(w->files);
    w->files = NULL;
    w->file_count = 0;
}

void watch_free(struct watch *w)
{
    if (!w)
        return;
    clear(w);
    char ignored[8];
    watch_take_changes(w, ignored, sizeof ignored);
    close(w->fd);
    free(w);
}

int watch_fd(const struct watch *w) { return w->fd; }

/* The folder of `file` into dir (no trailing slash; "/" for the root). */
static void folder_of(const char *file, char *dir, size_t size)
{
    const char *slash = strrchr(file, '/');
    if (!slash || slash == file)
        snprintf(dir, size, "/");
    else
        snprintf(dir, size, "%.*s", (int)(slash - file), file);
}

static int has_dir(const struct watch *w, const char *dir)
{
    for (size_t i = 0; i < w->dir_count; i++)
        if (strcmp(w->dirs[i].path, dir) == 0)
            return 1;
    return 0;
}

static int watch_dir(struct watch *w, const char *dir)
{
    if (has_dir(w, dir))
        return 0;
    int wd = inotify_add_watch(w->fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_ONLYDIR);
    if (wd < 0) {
        log_msg(LOG_WARNING, NULL, "cannot watch %s for script changes: %s", dir,
                strerror(errno));
        return -1;
    }
    struct watched_dir *grown = realloc(w->dirs, (w->dir_count + 1) * sizeof *grown);
    char *copy = strdup(dir);
    if (!grown || !copy) {
        free(copy);
        if (grown)
            w->dirs = grown;
        inotify_rm_watch(w->fd, wd);
        return -1;
    }
    w->dirs = grown;
    w->dirs[w->dir_count++] = (struct watched_dir){wd, copy};
    return 0;
}

static int needed_by(char *const *files, size_t count, const char *dir)
{
    char folder[4096];
    for (size_t i = 0; i < count; i++) {
        folder_of(files[i], folder, sizeof folder);
        if (strcmp(folder, dir) == 0)
            return 1;
    }
    return 0;
}

/* Folders are added before the old ones are dropped, and a folder watched before stays
 * watched: no change made while the set is replaced goes unseen. */
int watch_set(struct watch *w, char *const *files, size_t count)
{
    char **copies = calloc(count ? count : 1, sizeof *copies);
    if (!copies)
        return -1;
    for (size_t i = 0; i < count; i++) {
        if (!(copies[i] = strdup(files[i]))) {
            while (i--)
                free(copies[i]);
            free(copies);
            return -1;
        }
    }
    int rc = 0;
    char folder[4096];
    for (size_t i = 0; i < count; i++) {
        folder_of(files[i], folder, sizeof folder);
        if (watch_dir(w, folder) != 0)
            rc = -1;
    }
    size_t kept = 0;
    for (size_t i = 0; i < w->dir_count; i++) {
        if (needed_by(files, count, w->dirs[i].path)) {
            w->dirs[kept++] = w->dirs[i];
        } else {
            inotify_rm_watch(w->fd, w->dirs[i].wd);
            free(w->dirs[i].path);
        }
    }
    w->dir_count = kept;
    for (size_t i = 0; i < w->file_count; i++)
        free(w->files[i]);
    free(w->files);
    w->files = copies;
    w->file_count = count;
    return rc;
}

static const char *dir_of(const struct watch *w, int wd)
{
    for (size_t i = 0; i < w->dir_count; i++)
        if (w->dirs[i].wd == wd)
            return w->dirs[i].path;
    return NULL;
}

/* A file of the set, or any Lua file in a watched folder: a module a script requires later,
 * or one a rejected version started to require, is seen too. */
static int is_watched(const struct watch *w, const char *dir, const char *name)
{
    size_t name_len = strlen(name);
    if (name_len > 4 && strcmp(name + name_len - 4, ".lua") == 0)
        return 1;
    size_t dir_len = strlen(dir);
    for (size_t i = 0; i < w->file_count; i++) {
        const char *f = w->files[i];
        if (strncmp(f, dir, dir_len) == 0 && f[dir_len] == '/' && strcmp(f + dir_len + 1, name) == 0)
            return 1;
    }
    return 0;
}

static void remember_change(struct watch *w, const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t named = w->change_count < MAX_CHANGES_NAMED ? w->change_count : MAX_CHANGES_NAMED;
    for (size_t i = 0; i < named; i++)
        if (strcmp(w->changes[i], path) == 0)
            return;
    if (w->change_count < MAX_CHANGES_NAMED && !(w->changes[w->change_count] = strdup(path)))
        return;
    w->change_count++;
}

size_t watch_take_changes(struct watch *w, char *out, size_t size)
{
    size_t used = 0, count = w->change_count;
    out[0] = '\0';
    for (size_t i = 0; i < count && i < MAX_CHANGES_NAMED; i++) {
        if (used < size)
            used += (size_t)snprintf(out + used, size - used, "%s%s", i ? ", " : "",
                                     w->changes[i]);
        free(w->changes[i]);
        w->changes[i] = NULL;
    }
    if (count > MAX_CHANGES_NAMED && used < size)
        snprintf(out + used, size - used, " and %zu more", count - MAX_CHANGES_NAMED);
    w->change_count = 0;
    return count;
}

int watch_changed(struct watch *w)
{
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    int changed = 0;
    for (;;) {
        ssize_t n = read(w->fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            const char *dir = dir_of(w, ev->wd);
            if (!dir || ev->len == 0 || !is_watched(w, dir, ev->name))
                continue;
            if (!changed)
                log_msg(LOG_DEBUG, NULL, "script changed: %s/%s", dir, ev->name);
            changed = 1;
            remember_change(w, dir, ev->name);
        }
    }
    return changed;
}
