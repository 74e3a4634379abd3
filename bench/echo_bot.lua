-- SPDX-License-Identifier: MIT
-- The benchmark's bot: answers every message with its text, like bench/nginx.conf's handler.
local bot = {}

function bot.handle(msg, out)
  out:send_text_message(msg.text)
end

return bot
