-- SPDX-License-Identifier: MIT
-- A complete custom channel, the Lua counterpart of the custom connector in Rasa's docs.
-- Served at /webhooks/myio/webhook because of its name; its parameters come from the
-- `mypackage.myio:` key of credentials.yml.
local util = require "switchboard.channel"

local channel = { name = "myio" }

-- The keys it takes under `mypackage.myio:` in credentials.yml; any other key (a typo such as
-- `usernmae`) stops startup with "did you mean 'username'?".
channel.parameters = {
  username = { type = "string" },
  another_parameter = { type = "string" },
}

function channel.init(config)               -- the map under the key in credentials.yml (or nil)
  channel.username = util.params(config, channel):values().username
end

-- When the bot fails on a message (an error, no answer in time), tell the user.
function channel.on_bot_error(msg, out, err)
  out:send_text_message("Sorry, something went wrong. Please try again.")
end

function channel.sender(req)        return req.json.sender end            -- _extract_sender
function channel.message(req)       return req.json.message end           -- _extract_message
function channel.input_channel(req) return req.json.input_channel or channel.name end
function channel.metadata(req)                                            -- get_metadata
  local metadata = req.json.metadata or {}
  metadata.received_by = channel.username  -- anything the bot should know about the request
  metadata.user_agent = req.headers["user-agent"]
  return metadata
end

function channel.respond(messages, req)     -- collected bot messages -> the HTTP answer
  return { status = 200, json = messages }
end

return channel
