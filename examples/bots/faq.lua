-- SPDX-License-Identifier: MIT
-- A small Lua bot: answers a few questions, remembers nothing, echoes the rest.
-- Use it with `bot: { script: bots/faq.lua, greeting: "Hi there" }` in endpoints.yml.
local sb = require "switchboard"

local bot = { greeting = "Hello!" }

local answers = {
  hours = "We are open 9:00-17:00, Monday to Friday.",
  price = "Plans start at 10 EUR a month.",
  contact = "Write to help@example.com.",
}

function bot.init(config)
  bot.greeting = config and config.greeting or bot.greeting
end

function bot.handle(msg, out)
  local text = (msg.text or ""):lower()
  if text == "" or text:match("^/?start") or text:match("^h[ie]") then
    out:send_text_with_buttons(bot.greeting .. " What would you like to know?", {
      { title = "Opening hours", payload = "hours" },
      { title = "Prices", payload = "price" },
      { title = "Contact", payload = "contact" },
    })
    return
  end
  for topic, answer in pairs(answers) do
    if text:find(topic, 1, true) then
      out:send_text_message(answer)
      return
    end
  end
  sb.log.info("faq bot: no answer for %q", msg.text)
  out:send_text_message("Sorry, I can only answer questions about hours, prices and contact.")
end

return bot
