# SPDX-License-Identifier: MIT
"""bench/floor_pipeline.lua, the 'floor' of bench/run.sh (docs/performance.md, "The floor"): run
in place of lua/switchboard/pipeline.lua, it must answer the rest echo exactly as the real
pipeline does, in the sender's turn, or the benchmark compares unlike work."""
import os
import shutil
import tempfile
import threading
import unittest

from harness import SOURCE_DIR, Host, project

ECHO_BOT = os.path.join(SOURCE_DIR, "bench", "echo_bot.lua")
SLOW_BOT = """\
local sb = require "switchboard"
local bot = { inside = 0 }
function bot.handle(msg, out)
  bot.inside = bot.inside + 1
  local seen = bot.inside
  sb.sleep(0.05)
  bot.inside = bot.inside - 1
  out:send_text_message(msg.text .. " alone=" .. tostring(seen == 1))
end
return bot
"""


def floor_home():
    """A copy of lua/ and channels/ with the floor in place of the pipeline."""
    home = tempfile.mkdtemp(prefix="sb-floor-")
    for folder in ("lua", "channels"):
        shutil.copytree(os.path.join(SOURCE_DIR, folder), os.path.join(home, folder))
    shutil.copy(os.path.join(SOURCE_DIR, "bench", "floor_pipeline.lua"),
                os.path.join(home, "lua", "switchboard", "pipeline.lua"))
    return home


class FloorPipelineTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.home = floor_home()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.home, ignore_errors=True)

    def echo(self, env):
        folder = project({"credentials.yml": "rest:\n",
                          "endpoints.yml": "bot:\n  script: %s\n" % ECHO_BOT})
        with Host(cwd=folder, env=env) as host:
            status, _, answer = host.post_json("/webhooks/rest/webhook",
                                               {"sender": "u1", "message": "  hello there "})
            return status, answer

    def test_answers_the_rest_echo_as_the_real_pipeline(self):
        real = self.echo({})
        floor = self.echo({"SWITCHBOARD_HOME": self.home})
        self.assertEqual(real, (200, [{"recipient_id": "u1", "text": "hello there"}]))
        self.assertEqual(floor, real)

    def test_keeps_the_senders_turn(self):
        folder = project({"credentials.yml": "rest:\n", "bot.lua": SLOW_BOT,
                          "endpoints.yml": "bot:\n  script: bot.lua\n"})
        answers = []
        with Host(cwd=folder, env={"SWITCHBOARD_HOME": self.home}) as host:
            def send(i):
                answers.append(host.post_json("/webhooks/rest/webhook",
                                              {"sender": "same", "message": "m%d" % i}))
            threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        self.assertEqual(len(answers), 6)
        for status, _, answer in answers:
            self.assertEqual(status, 200)
            self.assertRegex(answer[0]["text"], r"^m\d alone=true$")


if __name__ == "__main__":
    unittest.main()
