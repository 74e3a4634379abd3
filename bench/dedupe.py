#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The cost of answering retries once (util.first_delivery: one sb.store `add` with a TTL per
platform message, docs/lua-api.md), on the embedded store and on Redis, in one run:

  embedded          one host, the embedded store, the echo bot
  embedded+dedupe   the same, the bot first records the message id with util.first_delivery
  redis             one host on Redis (`order: false`, so only the store differs), the echo bot
  redis+dedupe      the same with util.first_delivery

The id is each request's message_id (a new one per request, as a platform's event ids are), so
every call adds a key. wrk -t1 -c16 for DURATION seconds, then -c1. Printed: requests/s, p50,
p99, the host's and Redis's CPU per message, Redis commands per message.

  bench/dedupe.py [DURATION]      default 5 s
Needs wrk and redis-server (Debian packages of those names)."""
import os
import shutil
import subprocess
import sys
import tempfile

from benchlib import release_binary
from multihost import Stack, load


class DedupeStack(Stack):
    def redis_calls(self):
        """Every command the host sent Redis (no scripts run here: order is off)."""
        if not self.redis:
            return 0
        out = subprocess.run(["redis-cli", "-p", str(self.redis_port), "INFO", "commandstats"],
                             capture_output=True, text=True).stdout
        return sum(int(line.split("calls=")[1].split(",")[0]) for line in out.splitlines()
                   if line.startswith("cmdstat_") and not line.startswith("cmdstat_info:"))

ECHO = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "echo_bot.lua")).read()
DEDUPE = """\
local util = require "switchboard.channel"
local bot = {}
function bot.handle(msg, out)
  if util.first_delivery("bench", msg.message_id, 3600) then
    out:send_text_message(msg.text)
  end
end
return bot
"""
MANY = """\
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", "/webhooks/rest/webhook", {["Content-Type"] = "application/json"},
    '{"sender":"s' .. counter .. '","message":"hello there"}')
end
"""


def main():
    binary = release_binary()
    work = tempfile.mkdtemp(prefix="sb-dedupe-")
    script = os.path.join(work, "many.lua")
    with open(script, "w") as f:
        f.write(MANY)
    print("%-16s %-5s %9s %9s %9s %10s %10s %5s" % ("set-up", "load", "req/s", "p50", "p99",
                                                    "host CPU", "Redis CPU", "cmds"))
    for name, redis, bot in (("embedded", False, ECHO), ("embedded+dedupe", False, DEDUPE),
                             ("redis", True, ECHO), ("redis+dedupe", True, DEDUPE)):
        folder = os.path.join(work, name)
        os.makedirs(folder)
        stack = DedupeStack(binary, folder, 1, redis, order=False, behind_lb=False, bot=bot)
        try:
            for conns in (16, 1):
                r = load(stack, conns, script)
                print("%-16s -c%-3d %9.0f %9s %9s %8.1f µs %8.1f µs %5.2f" % (
                    name, conns, r.get("rps", 0), r.get("50%"), r.get("99%"), r["cpu_us"][0],
                    r["cpu_us"][1], r["calls"]), flush=True)
        finally:
            stack.close()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
