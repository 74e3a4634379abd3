-- SPDX-License-Identifier: MIT
-- The bundled demo bot: answers when endpoints.yml names no bot, so `switchboard run` works out of
-- the box and a newcomer sees every kind of bot message.
local ipairs = ipairs
local lower, gsub, match = string.lower, string.gsub, string.match

local bot = {}

local HELP = "Say \"buttons\", \"quick\", \"image\", \"cards\", \"custom\" or \"all\" to see each "
  .. "kind of message.\n\nAnything else I echo back."

local function show_buttons(out)
  out:send_text_with_buttons("Do you like Switchboard?", {
    { title = "Yes", payload = "/affirm" },
    { title = "No", payload = "/deny" },
  })
end

local function show_quick_replies(out)
  out:send_quick_replies("Pick a colour", {
    { title = "Red", payload = "/choose{\"colour\": \"red\"}" },
    { title = "Blue", payload = "/choose{\"colour\": \"blue\"}" },
  })
end

local function show_image(out)
  out:send_image_url("https://switchboard.invalid/demo/cat.png")
end

local function show_cards(out)
  out:send_elements({
    { title = "Switchboard", subtitle = "Channels in Lua",
      buttons = { { title = "Docs", payload = "/docs" } } },
    { title = "Your bot", subtitle = "Behind one URL",
      buttons = { { title = "Start", payload = "/start" } } },
  })
end

local function show_custom(out, msg)
  out:send_custom_json({ kind = "demo", sender = msg.sender_id, channel = msg.input_channel })
end

local commands = {
  buttons = show_buttons,
  quick = show_quick_replies,
  image = show_image,
  cards = show_cards,
  custom = show_custom,
}

function bot.handle(msg, out)
  local text = msg.text or ""
  local word = gsub(lower(text), "[%p%s]+$", "")
  if word == "" then
    out:send_text_message("I got a message without text.\n\n" .. HELP)
  elseif match(word, "^/?start") or match(word, "^hi$") or match(word, "^hello")
      or match(word, "^hey") then
    out:send_text_message("Hello! I am the Switchboard demo bot.\n\n" .. HELP)
  elseif word == "/affirm" then
    out:send_text_message("Great, glad to hear it!")
  elseif word == "/deny" then
    out:send_text_message("Sorry to hear that. Tell us why in an issue.")
  elseif word == "all" then
    for _, name in ipairs({ "buttons", "quick", "image", "cards", "custom" }) do
      commands[name](out, msg)
    end
  elseif commands[word] then
    commands[word](out, msg)
  else
    out:send_text_message("You said: " .. text)
  end
end

return bot
