/* SPDX-License-Identifier: MIT */
/* scaffold: `switchboard new channel NAME` (docs/writing-a-channel.md): a channel script to
 * start from, a case file its reloads must pass (NAME.cases/basic.yml) and a .luarc.json for
 * editors, in the project folder. Uses: nothing. */
#ifndef SB_SCAFFOLD_H
#define SB_SCAFFOLD_H

#include <stddef.h>

/* Write the files for channel `name` into `dir`; data_dir holds the annotations the .luarc.json
 * points at. Refuses to overwrite a script or cases folder (a .luarc.json is kept). Returns 0 (a
 * summary printed), or -1 with err. */
int scaffold_channel(const char *name, const char *dir, const char *data_dir, char *err,
                     size_t errlen);

#endif
