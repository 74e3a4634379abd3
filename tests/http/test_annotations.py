# SPDX-License-Identifier: MIT
"""The editor annotations (annotations/) match the live API of the real binary.

A project channel lists, through the running host, every key of `require "switchboard"` (and of
its nested tables), every hook name of `require("switchboard.hooks").kinds`, the helpers of
`require "switchboard.channel"`, and which annotated `req` fields, `out` methods and UserMessage
keys exist. Each must appear in the annotations, and the annotations must name nothing the host
lacks. Adding a function to the module without annotating it fails here.
"""
import json
import os
import re
import unittest
import urllib.parse

import harness

ANNOTATIONS = os.path.join(harness.SOURCE_DIR, "annotations")

CHANNEL = r"""
local sb = require "switchboard"
local hooks = require "switchboard.hooks"
local util = require "switchboard.channel"
local channel = { name = "probe" }

-- Every key of t and of its nested tables, as dotted paths.
local function paths(t, prefix, out)
  for k, v in pairs(t) do
    out[#out + 1] = prefix .. k
    if type(v) == "table" then paths(v, prefix .. k .. ".", out) end
  end
  return out
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local function split(s)
  local out = {}
  for name in (s or ""):gmatch("[^,]+") do out[#out + 1] = name end
  return out
end

channel.routes = {
  ["GET /api"] = function()
    local module = paths(sb, "", {})
    table.sort(module)
    local p = util.params({}, "probe")
    return { json = {
      module = module,
      hooks = sorted_keys(hooks.kinds),
      hooks_module = sorted_keys(hooks),
      channel_helpers = sorted_keys(util),
      params_methods = sorted_keys(getmetatable(p).__index),
    } }
  end,
  -- The annotated req fields that read nil on a live request (json is a valid body's value).
  ["POST /req"] = function(req)
    local missing = sb.json.array()
    for _, name in ipairs(split(req.query.fields)) do
      if req[name] == nil then missing[#missing + 1] = name end
    end
    return { json = missing }
  end,
  -- Each annotation file compiles (as Lua 5.4, with the host's own loader).
  ["GET /compile"] = function(req)
    local errors = sb.json.array()
    for _, path in ipairs(split(req.query.files)) do
      local ok, err = loadfile(path)
      if not ok then errors[#errors + 1] = err end
    end
    return { json = errors }
  end,
}

return channel
"""

# The bot answers with the annotated `out` methods it lacks and the keys its UserMessage has.
BOT = r"""
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  local missing, keys = sb.json.array(), sb.json.array()
  for name in msg.text:gmatch("[^,]+") do
    if out[name] == nil then missing[#missing + 1] = name end
  end
  for k in pairs(msg) do keys[#keys + 1] = k end
  table.sort(keys)
  out:send_custom_json({ missing = missing, msg_keys = keys })
end
return bot
"""


def read(name):
    with open(os.path.join(ANNOTATIONS, name)) as f:
        return f.read()


def class_blocks(text):
    """{class name: [field names]} from `---@class` blocks and the `---@field` lines after them."""
    classes, current = {}, None
    for line in text.splitlines():
        m = re.match(r"---@class\s+([\w.]+)", line)
        if m:
            current = m.group(1)
            classes.setdefault(current, [])
            continue
        if not line.startswith("---"):
            current = None
            continue
        m = re.match(r"---@field\s+(\w+)\??\s", line)
        if m and current:
            classes[current].append(m.group(1))
    return classes


def module_paths(text):
    """Dotted paths the module annotations declare: `function sb.x.y(`, `sb.x =`, and the
    `---@field`s of the lower-case classes `switchboard` and `switchboard.<table>`."""
    found = set(re.findall(r"^function sb\.([\w.]+)\(", text, re.M))
    found |= set(re.findall(r"^sb\.([\w.]+)\s*=", text, re.M))
    for cls, fields in class_blocks(text).items():
        if not re.fullmatch(r"switchboard(\.[a-z_]+)*", cls):
            continue
        prefix = cls[len("switchboard."):] + "." if "." in cls else ""
        found |= {prefix + f for f in fields}
    return found


def methods(text, table):
    return set(re.findall(r"^function %s[.:](\w+)\(" % re.escape(table), text, re.M))


class Annotations(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        folder = harness.project({"probe.lua": CHANNEL, "bot.lua": BOT,
                                  "credentials.yml": "probe.lua:\n",
                                  "endpoints.yml": "bot:\n  script: bot.lua\n"})
        cls.host = harness.Host(["--credentials", os.path.join(folder, "credentials.yml"),
                                 "--endpoints", os.path.join(folder, "endpoints.yml")])
        status, _, body = cls.host.request("GET", "/webhooks/probe/api")
        assert status == 200, body
        cls.live = json.loads(body)
        cls.module = read("switchboard.lua")
        cls.types = class_blocks(read("channel.lua"))
        cls.bot = read("bot.lua")

    @classmethod
    def tearDownClass(cls):
        cls.host.stop()

    def test_the_live_module_is_listed(self):
        # Guards the probe itself: a listing that missed nested tables would prove nothing.
        for path in ("json.encode", "http.request", "log.warning", "hmac", "version"):
            self.assertIn(path, self.live["module"])

    def test_every_function_and_field_of_the_module_is_annotated(self):
        missing = sorted(set(self.live["module"]) - module_paths(self.module))
        self.assertEqual(missing, [], "in require 'switchboard' but not in "
                         "annotations/switchboard.lua")

    def test_the_annotations_name_nothing_the_module_lacks(self):
        extra = sorted(module_paths(self.module) - set(self.live["module"]))
        self.assertEqual(extra, [], "annotated but not in require 'switchboard'")

    def test_every_hook_is_a_field_of_the_channel_class(self):
        fields = set(self.types["switchboard.Channel"])
        self.assertEqual(sorted(set(self.live["hooks"]) - fields), [],
                         "in switchboard.hooks but not in the switchboard.Channel class")
        # And the class names no hook the host does not know (name is the one plain field).
        self.assertEqual(sorted(fields - set(self.live["hooks"]) - {"name"}), [],
                         "in the switchboard.Channel class but not a hook of switchboard.hooks")

    def test_the_hooks_module_is_annotated(self):
        cls = class_blocks(read("switchboard_hooks.lua"))["switchboard.hooks"]
        self.assertIn("kinds", self.live["hooks_module"])
        self.assertEqual(sorted(cls), self.live["hooks_module"])

    def test_every_channel_helper_is_annotated(self):
        text = read("switchboard_channel.lua")
        self.assertEqual(sorted(set(self.live["channel_helpers"]) ^ methods(text, "util")), [],
                         "switchboard.channel and its annotations differ")
        self.assertEqual(sorted(set(self.live["params_methods"]) - {"__index"}
                                ^ methods(text, "Params")), [],
                         "the parameter reader and its annotations differ")

    def test_every_annotated_request_field_exists(self):
        fields = self.types["switchboard.Request"]
        self.assertGreaterEqual(len(fields), 10)
        query = urllib.parse.urlencode({"fields": ",".join(fields)})
        status, _, missing = self.host.post_json("/webhooks/probe/req?" + query, {"a": 1})
        self.assertEqual((status, missing), (200, []))

    def test_out_and_the_user_message_match_the_annotations(self):
        out_methods = methods(self.bot, "Out")
        self.assertIn("send_response", out_methods)
        status, _, body = self.host.post_json("/webhooks/probe/webhook", {
            "sender": "u1", "message": ",".join(sorted(out_methods) + ["recipient_id"]),
            "metadata": {"x": 1}})
        self.assertEqual(status, 200, body)
        reply = body[0]["custom"]
        self.assertEqual(reply["missing"], [])
        user_message = set(class_blocks(self.bot)["switchboard.UserMessage"])
        self.assertEqual(sorted(set(reply["msg_keys"]) - user_message), [],
                         "the UserMessage has keys the annotations do not name")

    def test_every_annotation_file_compiles(self):
        files = [os.path.join(ANNOTATIONS, f) for f in sorted(os.listdir(ANNOTATIONS))
                 if f.endswith(".lua")]
        self.assertGreaterEqual(len(files), 5)
        query = urllib.parse.urlencode({"files": ",".join(files)})
        status, _, body = self.host.request("GET", "/webhooks/probe/compile?" + query)
        self.assertEqual((status, json.loads(body)), (200, []))


if __name__ == "__main__":
    unittest.main()
