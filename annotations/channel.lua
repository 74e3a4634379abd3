---@meta
-- SPDX-License-Identifier: MIT
-- Editor annotations (lua-language-server) for a channel script: the channel table and its hooks,
-- the request object `req` and response tables. Never loaded by the host. docs/lua-api.md, "The
-- channel table" and "The request object `req`", is the reference.
--
--   ---@type switchboard.Channel
--   local channel = { name = "acme" }
--   function channel.verify(req) ... end   -- req is a switchboard.Request

---The request object: read-only, valid from the first hook to the end of the request. Every field
---is built on first use, then cached. Any other field reads as `nil`; assigning raises.
---@class switchboard.Request: userdata
---@field method string The method as sent: `"POST"`.
---@field path string The full path, percent-decoded, without the query: `"/webhooks/acme/webhook"`.
---@field url string `scheme://host` and the request target exactly as sent.
---@field query table<string, string> Query parameters, percent-decoded; the first value wins.
---@field headers table<string, string> Request headers, names in lower case; repeats joined with `", "`.
---@field body string The raw body bytes, exactly as received; `""` when there is none.
---@field json any The body decoded with `sb.json.decode`. On an empty or invalid body it raises an HTTP error (400 `invalid_json`).
---@field form table<string, string> The body decoded as `application/x-www-form-urlencoded`; never raises.
---@field remote_addr string The peer's IP address, without the port.
---@field id string The request id: in the log and in the `X-Request-Id` answer header.
---@field params table<string, string> The `{name}` segments of the route the request matched, percent-decoded; `{}` for other requests.

---An HTTP answer a script returns (`reject`, `receive`'s second result, `respond`, `ack`, routes).
---@class switchboard.Response
---@field status? integer 100 to 599; default 200.
---@field headers? table<string, string|number> At most 32.
---@field json? any Encoded with `sb.json.encode`; takes precedence over `body`.
---@field body? string Sent as is; default `""`.
---@field content_type? string The `Content-Type`; default from `json` or `body`.

---A message `receive` returns; normalized into a `switchboard.UserMessage` before the bot gets it.
---@class switchboard.IncomingMessage
---@field text? string
---@field sender_id? string|number
---@field message_id? string|number
---@field input_channel? string
---@field metadata? any
---@field parse_data? any

---A route handler of `channel.routes`: a response, or messages for the bot (as `receive` returns them) and optionally the response.
---@alias switchboard.RouteHandler fun(req: switchboard.Request): (switchboard.Response|switchboard.IncomingMessage[]), switchboard.Response?

---@alias switchboard.BotErrorKind
---| "script_error" # the Lua bot raised (its CPU budget and memory cap too)
---| "deadline" # the message took longer than the response timeout
---| "timeout" # the HTTP bot did not answer within its own timeout
---| "refused" # the HTTP bot could not be reached (refused, unknown host, TLS)
---| "bad_status" # the HTTP bot answered a status other than 2xx
---| "bad_json" # the HTTP bot's answer is not a JSON array of messages

---What `on_bot_error` gets when the bot failed a message.
---@class switchboard.BotError
---@field kind switchboard.BotErrorKind What failed.
---@field message string The error, on one line.
---@field status? integer The HTTP bot's answer status, with `bad_status`.

---The declaration of one parameter in `channel.parameters`.
---@class switchboard.ParameterDeclaration
---@field type switchboard.ParameterType Required: the reader of that name reads it (`p:values()`).
---@field required? boolean `credentials.yml` must give it.
---@field default? any The value when it is absent.
---@field choices? string[] The allowed values of a string.
---@field secret? boolean Its value is never shown in an error.
---@field hint? string Added to the error when a required value is missing.
---@field number_as_text? boolean A string parameter accepts a number, written as text.

---An open WebSocket connection, in `on_open`, `on_message` and `on_close`.
---@class switchboard.Connection
---@field id string 32 hex digits, unique.
---@field data table The channel's own values for this connection, kept from `on_open` to `on_close` (and across a reload when they are JSON values).
local Connection = {}

---Send a message on this connection.
---@param data string Text (UTF-8), or bytes with `binary`.
---@param binary? boolean
---@return true|nil ok
---@return string? err "the connection is closed"
function Connection:send(data, binary) end

---Start the close handshake; `on_close` follows.
---@param code? integer 1000 (the default), or 3000-4999 for the application's own.
---@param reason? string
function Connection:close(code, reason) end

---Send `text` every `seconds` while the connection is open: a protocol's own ping (Engine.IO's `"2"`). 0 stops it.
---@param seconds number
---@param text? string
function Connection:keepalive(seconds, text) end

---Sends to `sender_id` (`sb.connections.send`, the channel's senders) reach this connection until it closes.
---@param sender_id string
---@return boolean ok
function Connection:bind(sender_id) end

---A channel script returns this table. Only `name` is required; every hook left out behaves like
---the `rest` channel's. Hooks are plain functions: define them with a dot, not a colon. Other
---fields are free for the channel's own state.
---@class switchboard.Channel
---@field name string Required: the URL prefix, `/webhooks/<name>/...` (letters, digits, `_`, `-`, `.`).
---@field init? fun(config: table?) Once per worker at startup and every reload, and by `switchboard check`: the channel's map from `credentials.yml`.
---@field startup? fun(config: table?) Once per load after every worker's `init`, in the main thread; `sb.http.request` waits there.
---@field derived_secrets? fun(values: table): table<string, string> Only when requests are recorded (`switchboard run --record`): values the channel computes from its secret parameters, by name; given the parameters' values, then the redacted ones, so a case file holds what a replay computes.
---@field parameters? table<string, switchboard.ParameterDeclaration> The parameters the channel takes, by name: an unknown key in `credentials.yml` is an error, with the nearest name.
---@field verify? fun(req: switchboard.Request): boolean?, string? First, on `POST /webhooks/<name>/webhook`: `true`, or `false, reason`.
---@field reject? fun(req: switchboard.Request, reason: string): switchboard.Response When `verify` refused; default 401 `unauthorized`.
---@field receive? fun(req: switchboard.Request): switchboard.IncomingMessage[]?, switchboard.Response? The request's messages, and optionally the HTTP answer.
---@field sender? fun(req: switchboard.Request): string|number? By the default `receive`: the sender id (default `req.json.sender`).
---@field message? fun(req: switchboard.Request): string? By the default `receive`: the text (default `req.json.message`).
---@field input_channel? fun(req: switchboard.Request): string? By the default `receive` (default `req.json.input_channel`).
---@field metadata? fun(req: switchboard.Request): any By the default `receive` (default `req.json.metadata`).
---@field message_id? fun(req: switchboard.Request): string|number? By the default `receive` (default `req.json.message_id`).
---@field before_message? fun(msg: switchboard.UserMessage) Per message, in its sender's turn, before the bot.
---@field after_message? fun(msg: switchboard.UserMessage, ok: boolean) Per message, after the bot (also when it failed).
---@field on_bot_error? fun(msg: switchboard.UserMessage, out: switchboard.Out, err: switchboard.BotError) When the bot failed a message: a chance to say sorry through `out`.
---@field respond? fun(messages: switchboard.BotShape[], req: switchboard.Request): switchboard.Response Collect channels: the answer from the collected replies.
---@field stream? fun(req: switchboard.Request): boolean Collect channels: stream the replies (default: query `stream=true`).
---@field ack? fun(req: switchboard.Request): switchboard.Response Push channels: the answer (default 200 `success`).
---@field async? boolean Push channels: answer before the bot runs (default `false`).
---@field routes? table<string, switchboard.RouteHandler> Extra routes below `/webhooks/<name>`, keyed `"METHOD /path"`.
---@field websocket? string A WebSocket route below `/webhooks/<name>` (or below `mount`), such as `"/ws"`; needs `on_message`.
---@field mount? string The path the channel's routes and websocket are below instead of `/webhooks/<name>`, such as `"/socket.io"`.
---@field on_open? fun(conn: switchboard.Connection, req: switchboard.Request): switchboard.Response? A client opens the WebSocket: return a response to refuse it (nothing accepts).
---@field on_message? fun(conn: switchboard.Connection, data: string, binary: boolean): switchboard.IncomingMessage[]? A message on the connection; returns the messages for the bot, as `receive` does.
---@field on_close? fun(conn: switchboard.Connection, code: integer, reason: string) The connection closed (1006: without a close handshake).
---@field send_response? fun(recipient_id: string, message: switchboard.BotMessage, msg: switchboard.UserMessage) Push: a whole bot message, and every kind the channel has no sender for.
---@field send_text_message? fun(recipient_id: string, text: string, extras: table, msg: switchboard.UserMessage) Push: a text.
---@field send_image_url? fun(recipient_id: string, url: string, extras: table, msg: switchboard.UserMessage) Push: an image.
---@field send_attachment? fun(recipient_id: string, value: any, extras: table, msg: switchboard.UserMessage) Push: an attachment.
---@field send_text_with_buttons? fun(recipient_id: string, text: string?, buttons: switchboard.Button[], extras: table, msg: switchboard.UserMessage) Push: a text with buttons.
---@field send_quick_replies? fun(recipient_id: string, text: string?, quick_replies: switchboard.Button[], extras: table, msg: switchboard.UserMessage) Push: quick replies.
---@field send_elements? fun(recipient_id: string, elements: switchboard.Element[], extras: table, msg: switchboard.UserMessage) Push: cards.
---@field send_custom_json? fun(recipient_id: string, value: any, extras: table, msg: switchboard.UserMessage) Push: a custom payload.
---@field [string] any The channel's own state (`channel.token = config.token`).
