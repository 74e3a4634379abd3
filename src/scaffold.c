/* SPDX-License-Identifier: MIT */
/* scaffold: see scaffold.h. The files are templates with the channel's name filled in; nothing
 * that exists is overwritten. */
#include "scaffold.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char channel_template[] =
    "-- The %1$s channel: one request is one message, and the bot's replies are the answer.\n"
    "-- Start here, then see docs/writing-a-channel.md (the hooks) and docs/testing.md (the\n"
    "-- cases in %1$s.cases/, which every reload must pass).\n"
    "local util = require \"switchboard.channel\"\n"
    "\n"
    "local channel = { name = \"%1$s\" }   -- served at /webhooks/%1$s/webhook\n"
    "\n"
    "-- The keys this channel takes under its key in credentials.yml (a typo there is an error).\n"
    "channel.parameters = {\n"
    "  greeting = { type = \"string\", default = \"Hello\" },\n"
    "}\n"
    "\n"
    "function channel.init(config)\n"
    "  channel.settings = util.params(config, channel):values()\n"
    "end\n"
    "\n"
    "-- The request's JSON body {\"sender\": ..., \"message\": ...} as one UserMessage.\n"
    "function channel.receive(req)\n"
    "  local body = req.json\n"
    "  return { {\n"
    "    sender_id = body.sender,\n"
    "    text = body.message,\n"
    "    metadata = { greeting = channel.settings.greeting },\n"
    "  } }\n"
    "end\n"
    "\n"
    "-- The bot's messages, collected, as the HTTP answer.\n"
    "function channel.respond(messages, req)\n"
    "  return { status = 200, json = messages }\n"
    "end\n"
    "\n"
    "return channel\n";

static const char cases_template[] =
    "# Cases of the %1$s channel: `switchboard test %1$s.cases` runs them, and every reload of\n"
    "# %1$s.lua must pass them before it is adopted (docs/testing.md).\n"
    "credentials:\n"
    "  ../%1$s.lua:\n"
    "    greeting: Hi\n"
    "bot:\n"
    "  replies:\n"
    "    - text: Hello from the bot\n"
    "cases:\n"
    "  - name: a message reaches the bot and its reply is the answer\n"
    "    request:\n"
    "      json: {sender: u1, message: hi}\n"
    "    expect:\n"
    "      status: 200\n"
    "      json: [{recipient_id: u1, text: Hello from the bot}]\n"
    "      messages: [{sender_id: u1, text: hi, metadata: {greeting: Hi}}]\n";

static const char luarc_template[] =
    "{\n"
    "  \"runtime.version\": \"Lua 5.4\",\n"
    "  \"workspace.library\": [\"%1$s/annotations\"],\n"
    "  \"diagnostics.globals\": []\n"
    "}\n";

static int valid_name(const char *name)
{
    if (!*name || strlen(name) > 64)
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

/* Write a new file (never over an existing one). Returns 0, 1 when it existed, -1 on error. */
static int write_new(const char *path, const char *fmt, const char *arg, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0 && errno == EEXIST)
        return 1;
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    fprintf(f, fmt, arg);
    if (fclose(f) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int scaffold_channel(const char *name, const char *dir, const char *data_dir, char *err,
                     size_t errlen)
{
    if (!valid_name(name)) {
        snprintf(err, errlen, "'%s' is not a channel name: use lower-case letters, digits, '_' "
                              "and '-' (it becomes the URL /webhooks/<name>/)", name);
        return -1;
    }
    char script[4200], cases_dir[4200], cases[4300], luarc[4200];
    snprintf(script, sizeof script, "%s/%s.lua", dir, name);
    snprintf(cases_dir, sizeof cases_dir, "%s/%s.cases", dir, name);
    snprintf(cases, sizeof cases, "%s/basic.yml", cases_dir);
    snprintf(luarc, sizeof luarc, "%s/.luarc.json", dir);
    struct stat sb;
    if (stat(script, &sb) == 0 || stat(cases_dir, &sb) == 0) {
        snprintf(err, errlen, "%s or %s already exists: nothing was written", script, cases_dir);
        return -1;
    }
    if (mkdir(cases_dir, 0755) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", cases_dir, strerror(errno));
        return -1;
    }
    if (write_new(script, channel_template, name, err, errlen) != 0 ||
        write_new(cases, cases_template, name, err, errlen) != 0)
        return -1;
    int luarc_made = write_new(luarc, luarc_template, data_dir, err, errlen);
    if (luarc_made < 0)
        return -1;
    printf("created %s\ncreated %s\n%s %s\n\n"
           "Next: add `%s.lua:` to credentials.yml, then\n"
           "  switchboard test %s\n"
           "  switchboard try %s --data '{\"sender\": \"u1\", \"message\": \"hi\"}'\n",
           script, cases, luarc_made == 0 ? "created" : "kept the existing", luarc, name,
           cases_dir, name);
    return 0;
}
