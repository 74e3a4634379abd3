-- SPDX-License-Identifier: MIT
-- A complete custom channel, the Lua counterpart of the custom connector in Rasa's docs.
-- Served at /webhooks/myio/webhook because of its name; its parameters come from the
-- `mypackage.myio:` key of credentials.yml.
local channel = { name = "myio" }

function channel.init(config)               -- the map under the key in credentials.yml (or nil)
  channel.username = config and config.username
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
