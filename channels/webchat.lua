-- SPDX-License-Identifier: MIT
-- webchat: a chat page for the browser (docs/channels/webchat.md), served by the host itself.
--
-- GET <path>/ gives channels/webchat/index.html, GET <path>/chat.js and GET <path>/chat.css the
-- script and the style next to it. The page talks to the bot through the socketio channel
-- (docs/channels/socketio.md), which must be enabled too: this channel only serves files.
--
-- credentials.yml:
--   webchat:
--     path: /chat            # where the page is served (default /chat)
--   socketio:
--     session_persistence: true
local sb = require "switchboard"

local channel = { name = "webchat" }

channel.parameters = {
  path = { type = "string", default = "/chat" },
}

local FILES = {
  ["index.html"] = "text/html; charset=utf-8",
  ["chat.js"] = "text/javascript; charset=utf-8",
  ["chat.css"] = "text/css; charset=utf-8",
}

-- The folder webchat/ next to this script, wherever the channels are installed.
local function assets_dir()
  local source = debug.getinfo(1, "S").source
  local dir = source:sub(1, 1) == "@" and source:sub(2):match("^(.*)[/\\]") or "."
  return dir .. "/webchat/"
end

local DIR = assets_dir()

-- Read on each request, so an edited page is served at once (as scripts are reloaded).
local function serve(name)
  return function(req)
    if name == "index.html" and req.path:sub(-1) ~= "/" then
      -- The page names its script and style relative to itself: /chat must become /chat/.
      return { status = 308, headers = { Location = req.path .. "/" } }
    end
    local f, err = io.open(DIR .. name, "rb")
    if not f then
      sb.log.error("webchat: cannot read %s: %s", name, tostring(err))
      return { status = 404, json = { error = "not_found", message = "webchat: " .. name ..
        " is missing" } }
    end
    local body = f:read("a")
    f:close()
    return { status = 200, content_type = FILES[name], body = body,
      headers = { ["Cache-Control"] = "no-cache", ["X-Content-Type-Options"] = "nosniff" } }
  end
end

-- The page sends messages through the socketio channel; this channel's webhook takes none.
function channel.receive()
  return sb.json.array(), { status = 404, json = { error = "not_found",
    message = "the webchat channel takes no messages: the page talks to the socketio channel" } }
end

function channel.init(config)
  local util = require "switchboard.channel"
  local path = util.params(config, channel):values().path
  if path:sub(1, 1) ~= "/" then path = "/" .. path end
  channel.mount = path
  channel.routes = {
    ["GET /"] = serve("index.html"),
    ["GET /chat.js"] = serve("chat.js"),
    ["GET /chat.css"] = serve("chat.css"),
  }
end

return channel
