-- SPDX-License-Identifier: MIT
-- The bot of an offline run (`switchboard test`, `switchboard try`, docs/testing.md): it records
-- every UserMessage it gets, then answers with the case's scripted replies, with a Lua bot of
-- the project (`script`), or by echoing the text.
--
-- bot:
--   replies: [{text: "Hi"}, {image: "https://x/y.png"}]   # sent for every message, in order
--   lua: bots/faq.lua                                      # or a Lua bot, relative to the case
--   echo: true                                             # the default without replies/script
local record = require("switchboard.case_log").record

local bot = {}
local replies, inner

function bot.init(config)
  config = config or {}
  replies = config.replies
  if config.lua then
    inner = dofile(config.lua)
    if type(inner) ~= "table" or type(inner.handle) ~= "function" then
      error(("%s: a bot must return a table with handle(msg, out)"):format(config.lua), 0)
    end
    if inner.init then
      inner.init(config)
    end
  end
end

function bot.handle(msg, out)
  record(msg)
  if inner then
    return inner.handle(msg, out)
  end
  if replies then
    for _, reply in ipairs(replies) do
      out:send_response(reply)
    end
    return
  end
  if msg.text ~= nil then
    out:send_text_message(msg.text)
  end
end

return bot
