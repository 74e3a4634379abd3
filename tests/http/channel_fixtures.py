# SPDX-License-Identifier: MIT
"""What the tests of the bundled platform channels share (test_channel_facebook.py, _slack,
_telegram, _twilio; test_callback.py for its startup check): the recorded fixtures, the recording
Lua bot and the host that runs it, waiting for what the bot got and for the calls a platform API
stand-in received, and the check of a start that credentials.yml refuses.

The host and the stand-in of one test class are managed by standins.StandInHostCase.

sdk() runs the outside checks in tests/sdk/: node scripts over the platforms' official SDKs."""
import json
import os
import re
import shutil
import subprocess
import time

from util import error_lines, make_project, run_to_exit, serve

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
SDK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sdk")


# ---- fixtures -----------------------------------------------------------------------------------

def fixture(platform, name):
    """The bytes of fixtures/<platform>/<name>: a request body in the shape the platform sends."""
    with open(os.path.join(FIXTURES, platform, name), "rb") as f:
        return f.read()


def fixture_json(platform, name):
    return json.loads(fixture(platform, name))


def changed(raw, part, changes):
    """`raw` (a fixture's bytes) as it is when there are no `changes`; else re-encoded JSON in
    which the object part(payload) has each key of `changes` set to its value (None removes it)."""
    if not changes:
        return raw
    payload = json.loads(raw)
    target = part(payload)
    for key, value in changes.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return json.dumps(payload).encode()


def credentials_yml(channel, *lines, **params):
    """credentials.yml text for `channel`: its parameter lines as given ("key: value"), then each
    of `params` with its value written as JSON."""
    lines += tuple("%s: %s" % (key, json.dumps(value)) for key, value in params.items())
    return "".join(["%s:\n" % channel] + ["  %s\n" % line for line in lines])


# ---- the recording bot --------------------------------------------------------------------------

# The shared part of the tests' Lua bots (fixtures/lua/recording_bot.lua, a module their bot.lua
# requires): it logs "BOT GOT <json>" and answers the texts a test's bot.lua has replies for.
with open(os.path.join(FIXTURES, "lua", "recording_bot.lua")) as _f:
    RECORDING_BOT = _f.read()


def serve_bot(credentials, bot, **server):
    """A host on a new project: credentials.yml, bot.lua (the source `bot`, which requires
    recording_bot) and recording_bot.lua; one worker unless `server` says otherwise. Use it in a
    with block or stop it."""
    return serve({"credentials.yml": credentials, "recording_bot.lua": RECORDING_BOT}, bot=bot,
                 **server)


BOT_GOT_RE = re.compile(r"BOT GOT (\{.*\})")


def bot_got_all(host):
    """Every message the recording bot logged so far, decoded, in order."""
    return [json.loads(m.group(1)) for m in BOT_GOT_RE.finditer(host.log())]


def wait_bot_got_where(host, match, n=1, timeout=5.0):
    """The messages the bot logged for which match(message) is true, once there are `n` or more.
    The host's log is read by another thread, so a reply the platform stand-in already got can
    be ahead of the bot's log line: wait for the line, never read the log once."""
    deadline = time.monotonic() + timeout
    while True:
        found = [got for got in bot_got_all(host) if match(got)]
        if len(found) >= n:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("the bot got %d such message(s), not %d; log:\n%s"
                                 % (len(found), n, host.log()))
        time.sleep(0.02)


def wait_bot_got(host, text, timeout=5.0):
    """What the bot logged for the message with this text, once it has."""
    return wait_bot_got_where(host, lambda got: got.get("text") == text, 1, timeout)[0]


def wait_requests(api, find, what, n=1, timeout=5.0):
    """What find() returns (requests the stand-in `api` got), once it is `n` requests or more;
    `what` names them in the failure message."""
    deadline = time.monotonic() + timeout
    while True:
        found = find()
        if len(found) >= n:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("%d of %d %s requests; got %r"
                                 % (len(found), n, what, api.snapshot()))
        time.sleep(0.02)


# ---- startup ------------------------------------------------------------------------------------

def check(credentials):
    """`switchboard check` on a project of this credentials.yml (and one worker)."""
    return run_to_exit(["check"], cwd=make_project({"credentials.yml": credentials}))


def startup_error(test, result):
    """The one error line of a run or check that failed, as it must, at startup."""
    test.assertNotIn(result.returncode, (0, None), result.stderr)
    lines = error_lines(result.stderr)
    test.assertEqual(len(lines), 1, result.stderr)
    return lines[0]


def assert_refused(test, credentials, *words):
    """Both `run` and `check` fail on this credentials.yml with one error line naming
    credentials.yml and each of `words`."""
    folder = make_project({"credentials.yml": credentials})
    for command in (["run", "-p", "0", "-i", "127.0.0.1"], ["check"]):
        line = startup_error(test, run_to_exit(command, cwd=folder))
        for word in ("credentials.yml",) + words:
            test.assertIn(word, line)


# ---- outside checks with the official SDKs ------------------------------------------------------

# The npm packages tests/sdk/package.json pins; tests/sdk/node_modules holds them after npm ci.
SDK_PACKAGES = ("twilio", os.path.join("@slack", "bolt"), "ws", "socket.io-client",
                "puppeteer-core", "jsonwebtoken", "jose", "botframework-connector",
                "botframework-schema")


def sdk(script, data, timeout=60.0):
    """Runs `node tests/sdk/<script>` with `data` as JSON on its standard input and returns the
    JSON it writes. Fails (it does not skip) when node or the SDKs are not installed: the checks
    are part of the suite."""
    missing = [p for p in SDK_PACKAGES if not os.path.isdir(os.path.join(SDK, "node_modules", p))]
    if missing:
        raise AssertionError("the official SDKs are not installed (%s missing from "
                             "tests/sdk/node_modules): run `npm ci --prefix tests/sdk`"
                             % ", ".join(missing))
    node = shutil.which("node")
    if node is None:
        raise AssertionError("node is not installed: the outside checks in tests/sdk need "
                             "node 20 and `npm ci --prefix tests/sdk`")
    result = subprocess.run([node, os.path.join(SDK, script)], input=json.dumps(data),
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError("node tests/sdk/%s failed (exit %s):\n%s"
                             % (script, result.returncode, result.stderr))
    return json.loads(result.stdout)
