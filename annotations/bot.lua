---@meta
-- SPDX-License-Identifier: MIT
-- Editor annotations (lua-language-server) for the bot side: the UserMessage, `out`, bot messages
-- and the Lua bot table. Never loaded by the host. docs/lua-api.md, "UserMessage" and "The Lua
-- bot", is the reference.
--
--   ---@type switchboard.Bot
--   local bot = {}
--   function bot.handle(msg, out) out:send_text_message("hi") end

---The message a bot gets (and `before_message`, `after_message`, the senders' last argument).
---@class switchboard.UserMessage
---@field text? string The text, stripped; `nil` when there is none.
---@field sender_id string The sender; `"default"` when none was given.
---@field message_id string The message id; a fresh `sb.uuid()` when none was given.
---@field input_channel string The input channel; the channel's `name` by default.
---@field metadata? any What the channel put there, untouched.
---@field parse_data? any Passed through from the channel.
---@field headers table<string, string> The request's headers (`req.headers`).

---A button or a quick reply.
---@class switchboard.Button
---@field title string
---@field payload string
---@field [string] any

---A card of `send_elements`.
---@class switchboard.Element
---@field title? string
---@field subtitle? string
---@field buttons? switchboard.Button[]
---@field [string] any

---One bot message, dispatched by `out:send_response` in Rasa's order.
---@class switchboard.BotMessage
---@field text? string
---@field buttons? switchboard.Button[]
---@field quick_replies? switchboard.Button[]
---@field image? string
---@field attachment? any
---@field elements? switchboard.Element[]
---@field custom? any
---@field [string] any Extras, handed to a push channel's sender.

---What collect and stream mode store per call (`channel.respond` gets an array of them).
---@class switchboard.BotShape
---@field recipient_id string
---@field text? string
---@field buttons? switchboard.Button[]
---@field image? string
---@field attachment? any
---@field custom? any

---Sends the bot's messages to the message's sender: collected, streamed or pushed to the channel.
---@class switchboard.Out
---@field recipient_id string Always `msg.sender_id`.
local Out = {}

---@param text string
---@param extras? table
function Out:send_text_message(text, extras) end

---@param url string
---@param extras? table
function Out:send_image_url(url, extras) end

---@param value any
---@param extras? table
function Out:send_attachment(value, extras) end

---@param text string?
---@param buttons switchboard.Button[]
---@param extras? table
function Out:send_text_with_buttons(text, buttons, extras) end

---@param text string?
---@param quick_replies switchboard.Button[]
---@param extras? table
function Out:send_quick_replies(text, quick_replies, extras) end

---@param elements switchboard.Element[]
---@param extras? table
function Out:send_elements(elements, extras) end

---@param value any
---@param extras? table
function Out:send_custom_json(value, extras) end

---One whole bot message, dispatched to the senders above.
---@param message switchboard.BotMessage
function Out:send_response(message) end

---A Lua bot (`endpoints.yml`: `bot: {script: path}`) returns this table.
---@class switchboard.Bot
---@field init? fun(config: table?) Once per worker at startup and every reload, and by `switchboard check`: the `bot:` map without `script`.
---@field handle fun(msg: switchboard.UserMessage, out: switchboard.Out) Required: once per message, in its sender's turn.
---@field [string] any The bot's own state.
