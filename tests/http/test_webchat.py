# SPDX-License-Identifier: MIT
"""The webchat channel (docs/channels/webchat.md): the host serves the chat page, and the page,
in a real headless Chromium (tests/sdk/webchat_check.js, puppeteer-core), talks to the socketio
channel: text in and out, buttons (keyboard only; the bot gets the payload), an image, a reload
that keeps the session (the bot sees the same sender) and a reconnect after the server closed
the WebSocket. With SB_UPDATE_SCREENSHOT=1 the screenshot replaces docs/webchat.png."""
import json
import os
import shutil
import struct
import tempfile
import unittest

from channel_fixtures import sdk
from harness import SOURCE_DIR, project
from util import QuietHost as Host

# A 2x2 PNG would be invisible in the screenshot: a small SVG picture, inline.
PICTURE = ("data:image/svg+xml;base64,"
           "PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHdpZHRoPSIxNjAiIGhlaWdodD0iOTAiPjxy"
           "ZWN0IHdpZHRoPSIxNjAiIGhlaWdodD0iOTAiIGZpbGw9IiMwYjU3ZDAiLz48Y2lyY2xlIGN4PSI4MCIgY3k9IjQ1"
           "IiByPSIyOCIgZmlsbD0iI2Y1YTMwMCIvPjwvc3ZnPg==")

BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  local text = tostring(msg.text)
  sb.log.info("BOT GOT %%s %%s", msg.sender_id, text)
  if text == "buttons" then
    out:send_text_with_buttons("Do you like it?", {
      { title = "Yes", payload = "/yes" }, { title = "No", payload = "/no" } })
  elseif text == "image" then
    out:send_text_message("Here is a picture")
    out:send_image_url("%s")
  else
    out:send_text_message("echo: " .. text)
  end
end
return bot
""" % PICTURE

CREDENTIALS = "webchat:\nsocketio:\n  session_persistence: true\n"


def serve(credentials=CREDENTIALS):
    folder = project({"credentials.yml": credentials, "bot.lua": BOT,
                      "endpoints.yml": "bot:\n  script: bot.lua\nserver:\n  workers: 2\n"})
    return Host(cwd=folder)


def chromium():
    path = shutil.which("chromium")
    if path is None:
        raise AssertionError("chromium is not installed: `apt-get install chromium` (dev.sh "
                             "installs it)")
    return path


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


class WebchatTests(unittest.TestCase):
    def test_the_files_are_served_below_the_mount(self):
        with serve() as host:
            for path, kind in (("/chat/", "text/html"), ("/chat/chat.js", "text/javascript"),
                               ("/chat/chat.css", "text/css")):
                status, headers, body = host.request("GET", path)
                self.assertEqual(status, 200, path)
                self.assertEqual(headers["content-type"], kind + "; charset=utf-8")
                self.assertEqual(headers["cache-control"], "no-cache")
                name = "index.html" if path.endswith("/") else path.rsplit("/", 1)[1]
                with open(os.path.join(SOURCE_DIR, "channels", "webchat", name), "rb") as f:
                    self.assertEqual(body, f.read())
            status, headers, _ = host.request("GET", "/chat")
            self.assertEqual((status, headers["location"]), (308, "/chat/"))
            status, _, body = host.request("POST", "/webhooks/webchat/webhook", "{}",
                                           {"Content-Type": "application/json"})
            self.assertEqual(status, 404, body)
        with serve("webchat:\n  path: talk\nsocketio:\n") as host:
            self.assertEqual(host.request("GET", "/talk/chat.js")[0], 200)
            self.assertEqual(host.request("GET", "/chat/chat.js")[0], 404)

    def test_the_page_in_headless_chromium(self):
        shot = os.path.join(tempfile.mkdtemp(prefix="sb-webchat-"), "webchat.png")
        with serve() as host:
            got = sdk("webchat_check.js", {"url": "http://127.0.0.1:%d/chat/" % host.port,
                                           "chromium": chromium(), "screenshot": shot,
                                           "timeout": 10000}, timeout=60)
            host.wait_for_log("BOT GOT .* after", timeout=10)
            log = host.log()
        steps = got["steps"]
        self.assertEqual(got["console"], [])
        self.assertEqual((got["status"], got["headers"]),
                         (200, {"type": "text/html; charset=utf-8", "cache": "no-cache"}))
        self.assertEqual(got["a11y"], {"main": True, "live": "polite", "label": "Your message",
                                       "status": "Connected"})
        self.assertEqual(steps["focus_at_start"], "sb-chat-0-input")
        self.assertEqual(steps["buttons"], [{"user": "buttons"}, {"bot": "Do you like it?"},
                                            {"buttons": ["Yes", "No"]}])
        self.assertEqual(steps["focus_after_typing"], "sb-chat-0-input")
        # Keyboard only: Shift+Tab twice from the input reaches "Yes"; Enter clicks it, the
        # title is the user's bubble, the payload goes to the bot, focus returns to the input.
        self.assertEqual(steps["focused_button"], "Yes")
        self.assertEqual(steps["clicked"][3:], [{"user": "Yes"}, {"bot": "echo: /yes"}])
        self.assertEqual(steps["focus_after_click"], "sb-chat-0-input")
        self.assertEqual(steps["disabled_after_click"], [True, True])
        self.assertEqual(steps["image"][5:], [{"user": "image"}, {"bot": "Here is a picture"},
                                              {"image": True, "alt": "An image from the bot"}])
        # The reload: the same session, the conversation shown again, the same sender.
        self.assertRegex(got["session"], r'^"[0-9a-f]{32}"$')
        session = json.loads(got["session"])
        self.assertEqual(got["session_after_reload"], got["session"])
        self.assertTrue(steps["restored"])
        self.assertEqual(steps["focus_after_reload"], "sb-chat-0-input")
        self.assertEqual(steps["after_reload"], [{"user": "again"}, {"bot": "echo: again"}])
        # The reconnect: a visible "Reconnecting…", then connected again, the same session.
        self.assertTrue(steps["reconnect_states"][0].startswith("reconnecting: Reconnecting…"),
                        steps["reconnect_states"])
        self.assertTrue(steps["reconnect_states"][-1].startswith("connected"))
        self.assertTrue(steps["new_socket"])
        self.assertEqual(got["session_after_reconnect"], session)
        self.assertEqual(steps["after_reconnect"], [{"user": "after"}, {"bot": "echo: after"}])
        self.assertEqual(got["final_state"], "Connected")
        # The bot saw every message from the one sender, the buttons' payload included.
        for text in ("buttons", "/yes", "image", "again", "after"):
            self.assertIn("BOT GOT %s %s" % (session, text), log)
        self.assertEqual(png_size(shot), (800, 600))
        if os.environ.get("SB_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(shot, os.path.join(SOURCE_DIR, "docs", "webchat.png"))


if __name__ == "__main__":
    unittest.main()
