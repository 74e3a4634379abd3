-- SPDX-License-Identifier: MIT
-- The slack channel (docs/contract.md §8), the counterpart of Rasa's SlackInput (incoming) and
-- SlackBot (replies). docs/channels/slack.md is the user's guide; this header is the maintainer's
-- summary.
--
-- Incoming: Slack's Events API posts JSON (`url_verification`, `event_callback`); its
-- interactivity posts a form whose `payload` field is JSON (`block_actions`, legacy
-- `interactive_message`; shortcuts and `view_submission` are answered, not processed); a slash
-- command posts a plain form (`command`, `text`, `user_id`, `channel_id`, `response_url`, ...).
-- Every request must carry a valid `X-Slack-Signature` (HMAC-SHA256 of
-- "v0:<timestamp>:<raw body>" with the signing secret) and a timestamp within 5 minutes, else 400,
-- except Slack's `ssl_check=1` probe, which is unsigned and answered 200 without processing, as
-- Bolt does. The channel is async: Slack wants an answer within 3 s, so the answer (200, empty)
-- goes out before the bot runs.
--
-- Replies: one chat.postMessage per reply (per part of a text split on blank lines), to the
-- conversation the message came from (see `target`), in its thread when `use_threads` is set.
--
-- slack:
--   slack_token: "xoxb-..."              # Bot User OAuth Token, for chat.postMessage
--   slack_signing_secret: "..."          # required
--   slack_channel: "C0123ABCD"           # also listen to (and by default reply in) this channel
--   use_threads: false                   # reply in the thread of the user's message
--   conversation_granularity: sender     # sender | channel | thread: what one conversation is
--   errors_ignore_retry: [http_timeout]  # Slack retries with these reasons are answered, not processed
--   api_url: "https://slack.com/api"
--   timeout: 10                          # seconds per Web API call
--   dedupe_ttl: 3600                     # seconds an event_id is remembered (retries)
--
-- Retries: Slack sends an event again (X-Slack-Retry-Num 1 to 3, within about 5 minutes) when it
-- got no 2xx within 3 s. Each event_id is handed to the bot once (util.first_delivery); a repeat
-- is answered 200 at once. Interactivity and slash commands are not retried by Slack.
local sb = require "switchboard"
local util = require "switchboard.channel"

local json = sb.json
local strip = sb.strip
local non_null, nonempty_string, as_text = util.non_null, util.nonempty_string, util.as_text

local channel = { name = "slack", async = true }

local MAX_CLOCK_SKEW = 300        -- seconds between X-Slack-Request-Timestamp and our clock
local MAX_BUTTONS_PER_BLOCK = 25  -- Slack's limit of elements in one actions block
local MAX_ID_BYTES = 200          -- of an event_id in the log

channel.parameters = {
  slack_token = { type = "string", secret = true },
  slack_signing_secret = { type = "string", required = true, secret = true,
    hint = "requests from Slack cannot be verified without it: Slack app settings > " ..
      "Basic Information > App Credentials > Signing Secret" },
  slack_channel = { type = "string" },
  use_threads = { type = "flag", default = false },
  conversation_granularity = { type = "string", default = "sender",
    choices = { "sender", "channel", "thread" } },
  errors_ignore_retry = { type = "list", default = { "http_timeout" } },
  api_url = { type = "base_url", default = "https://slack.com/api" },
  timeout = { type = "seconds", default = 10 },
  dedupe_ttl = { type = "seconds", default = 3600 },
  -- The Web API calls' proxy (http://, https:// or socks5://); secret: it may hold a password.
  proxy = { type = "string", secret = true },
  -- Rasa's keys that have no effect here (docs/channels/slack.md): accepted, not used.
  slack_retry_reason_header = { type = "string" },
  slack_retry_number_header = { type = "string" },
}

-- The parameters, set by init (one copy per worker).
local cfg = {}

-- errors_ignore_retry: a list of Slack retry reasons, or one reason. Absent (or the "None" that
-- Rasa's documentation shows) means Rasa's default, http_timeout.
local function retry_reasons(reasons)
  if #reasons == 1 and (reasons[1] == "None" or reasons[1] == "none") then
    reasons = { "http_timeout" }
  end
  local set = {}
  for _, reason in ipairs(reasons) do
    set[reason] = true
  end
  return set
end

function channel.init(config)
  local v = util.params(config, channel, { number_as_text = true }):values()
  cfg = {
    token = v.slack_token,
    secret = v.slack_signing_secret,
    slack_channel = v.slack_channel,
    use_threads = v.use_threads,
    granularity = v.conversation_granularity,
    ignore_retry = retry_reasons(v.errors_ignore_retry),
    api_url = v.api_url,
    timeout = v.timeout,
    proxy = v.proxy,
    dedupe_ttl = v.dedupe_ttl,
  }
end

-- ---- verification ----------------------------------------------------------------------------

local function is_form(req)
  local content_type = (req.headers["content-type"] or ""):lower()
  return content_type:find("application/x-www-form-urlencoded", 1, true) ~= nil
end

-- Slack's probe of a slash command's URL (`ssl_check=1&token=...`) comes unsigned. Bolt answers
-- it without a signature; so does this channel, and receive() then processes nothing in it.
local function is_ssl_check(req)
  return is_form(req) and req.form.ssl_check == "1"
end

function channel.verify(req)
  if is_ssl_check(req) then
    return true
  end
  local headers = req.headers
  local timestamp = headers["x-slack-request-timestamp"]
  local signature = headers["x-slack-signature"]
  if not nonempty_string(timestamp) then
    return false, "the X-Slack-Request-Timestamp header is missing"
  end
  if not nonempty_string(signature) then
    return false, "the X-Slack-Signature header is missing"
  end
  if not timestamp:match("^%d+$") then
    return false, "X-Slack-Request-Timestamp is not a number of seconds"
  end
  if math.abs(sb.now() - tonumber(timestamp)) > MAX_CLOCK_SKEW then
    return false, "X-Slack-Request-Timestamp is more than 5 minutes away from this server's " ..
      "clock (a replayed or delayed request)"
  end
  local base = "v0:" .. timestamp .. ":" .. req.body
  local expected = "v0=" .. sb.hex(sb.hmac("sha256", cfg.secret, base))
  if not sb.secure_compare(expected, signature) then
    return false, "X-Slack-Signature does not match the request (wrong signing secret or " ..
      "altered body)"
  end
  return true
end

function channel.reject(_, reason)
  return { status = 400, json = { error = "invalid_signature", message = reason } }
end

-- The answer Slack gets for everything it sent, before the bot runs (docs/contract.md §4: async).
function channel.ack()
  return { status = 200, body = "" }
end

-- ---- incoming --------------------------------------------------------------------------------

-- An event that is answered 200 and not processed.
local function ignore(reason)
  sb.log.debug("slack: ignored: %s", reason)
  return {}, { status = 200, body = "ignored: " .. reason, content_type = "text/plain" }
end

-- A form (interactivity, slash command, ssl_check) that is answered and not processed: an empty
-- 200, as Bolt's ack() gives. Slack shows any other answer to a view_submission as an error.
local function acknowledge(reason)
  sb.log.debug("slack: answered, not processed: %s", reason)
  return {}, { status = 200, body = "" }
end

-- One conversation per sender, per sender and channel, or per sender, channel and thread, with
-- Rasa's ids: "<user>", "<user>_<channel>", "<user>_<channel>_<thread ts>". Missing parts fall
-- back to the user id, as Rasa's _get_conversation_id does.
local function conversation_id(user, channel_id, thread_id)
  if cfg.granularity == "channel" and channel_id then
    return user .. "_" .. channel_id
  elseif cfg.granularity == "thread" and channel_id and thread_id then
    return user .. "_" .. channel_id .. "_" .. thread_id
  end
  return user
end

local function string_or_nil(v)
  return nonempty_string(v) and v or nil
end

local function escape_pattern(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

-- Rasa's _sanitize_user_message: drop mentions of the given user ids (the bot), turn Slack's
-- link markup into its label, then (unlike Rasa) decode the three HTML entities Slack escapes.
local function clean_text(text, user_ids)
  for _, uid in ipairs(user_ids) do
    if type(uid) == "string" and uid ~= "" then
      local id = escape_pattern(uid)
      for _, mention in ipairs({ "<@" .. id .. ">", "<@" .. id .. "|[^>]*>" }) do
        text = text:gsub(mention .. "%s", "")
        text = text:gsub("%s" .. mention, "")
        text = text:gsub(mention, " ")
      end
    end
  end
  text = text:gsub("<([^<>]*)>", function(inner)
    local target, label = inner:match("^([^|]*)|(.*)$")
    target = target or inner
    if target:match("^https?://") or target:match("^mailto:") then
      if label and label ~= "" then
        return label
      end
      return (target:gsub("^mailto:", ""))
    end
    return nil -- user, channel and special mentions stay as they are
  end)
  text = text:gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&amp;", "&")
  return strip(text)
end

local function is_ignored_retry(headers)
  local count, reason = headers["x-slack-retry-num"], headers["x-slack-retry-reason"]
  return nonempty_string(count) and reason ~= nil and cfg.ignore_retry[reason] == true
end

-- The user ids whose mentions are removed: Rasa's get_metadata "users".
local function event_users(body)
  local users = json.array()
  if type(body.authed_users) == "table" then
    for _, u in ipairs(body.authed_users) do
      users[#users + 1] = u
    end
  elseif type(body.authorizations) == "table" and type(body.authorizations[1]) == "table" then
    local u = string_or_nil(body.authorizations[1].user_id)
    if u then
      users[1] = u
    end
  end
  return users
end

-- Whether the event is seen for the first time; a repeat (a retry of an event already
-- received, on any worker) is logged. An event without event_id counts as new.
local function first_delivery(body, headers)
  local id = string_or_nil(body.event_id)
  if util.first_delivery(channel.name, id, cfg.dedupe_ttl) then
    return true
  end
  local count = headers["x-slack-retry-num"]
  sb.log.info("slack: event %s (%s) was already received: answered, not processed again",
    id:sub(1, MAX_ID_BYTES), nonempty_string(count) and ("retry #" .. count .. ", " ..
      tostring(headers["x-slack-retry-reason"])) or "no retry header")
  return false
end

local function receive_event(req)
  local body = req.json
  if not util.is_object(body, req.body) then
    sb.http_error(400, "invalid_body", "a Slack event must be a JSON object")
  end
  if body.type == "url_verification" then
    if not nonempty_string(body.challenge) then
      sb.http_error(400, "invalid_body", "url_verification without a challenge")
    end
    return {}, { status = 200, json = { challenge = body.challenge } }
  end
  local headers = req.headers
  if is_ignored_retry(headers) then
    sb.log.warn("slack: retry #%s of an event (reason %s): answered, not processed again",
      headers["x-slack-retry-num"], headers["x-slack-retry-reason"])
    return {}, { status = 201, headers = { ["X-Slack-No-Retry"] = "1" }, body = "" }
  end
  if body.type ~= "event_callback" then
    return ignore("not an event_callback: " .. tostring(body.type))
  end
  local event = body.event
  if type(event) ~= "table" then
    return ignore("event_callback without an event")
  end
  if event.type ~= "message" and event.type ~= "app_mention" then
    return ignore("event type " .. tostring(event.type))
  end
  if non_null(event.bot_id) then
    return ignore("a bot's message")
  end
  if non_null(event.subtype) and event.subtype ~= "file_share" then
    return ignore("message subtype " .. tostring(event.subtype))
  end
  local user = string_or_nil(event.user)
  if not user then
    return ignore("a message without a user")
  end
  if not nonempty_string(event.text) then
    return ignore("a message without text")
  end
  local out_channel = string_or_nil(event.channel)
  -- Rasa's _is_supported_channel: direct messages, mentions of the app, and slack_channel.
  if not (event.channel_type == "im" or event.type == "app_mention"
      or (out_channel ~= nil and out_channel == cfg.slack_channel)) then
    return ignore("a message in channel " .. tostring(out_channel) ..
      " that does not mention the app")
  end
  if not first_delivery(body, headers) then
    return acknowledge("a repeat of event " .. tostring(body.event_id))
  end
  local metadata = {
    out_channel = out_channel,
    thread_id = string_or_nil(event.thread_ts) or string_or_nil(event.ts),
    users = event_users(body),
  }
  return { {
    sender_id = conversation_id(user, metadata.out_channel, metadata.thread_id),
    text = clean_text(event.text, metadata.users),
    metadata = metadata,
  } }
end

local function field(t, key)
  if type(t) == "table" then
    return t[key]
  end
  return nil
end

-- The text an interactive element stands for (Rasa's _get_interactive_response, plus
-- radio_buttons and timepicker); nil when the element carries no value.
local ACTION_VALUE = {
  button = function(a) return a.value end,
  select = function(a) return field(field(a.selected_options, 1), "value") end,
  static_select = function(a) return field(a.selected_option, "value") end,
  external_select = function(a) return field(a.selected_option, "value") end,
  overflow = function(a) return field(a.selected_option, "value") end,
  radio_buttons = function(a) return field(a.selected_option, "value") end,
  conversations_select = function(a) return a.selected_conversation end,
  users_select = function(a) return a.selected_user end,
  channels_select = function(a) return a.selected_channel end,
  datepicker = function(a) return a.selected_date end,
  timepicker = function(a) return a.selected_time end,
}

local function receive_interactive(raw)
  local ok, payload = pcall(json.decode, raw)
  if not ok or type(payload) ~= "table" then
    sb.http_error(400, "invalid_payload", "the `payload` field is not a JSON object")
  end
  local action = field(payload.actions, 1)
  if type(action) ~= "table" then
    return acknowledge("an interactive payload (" .. tostring(payload.type) ..
      ") without actions")
  end
  local value_of = ACTION_VALUE[action.type]
  if not value_of then
    sb.log.warn("slack: interactive component of type '%s' is not supported; ignored",
      tostring(action.type))
    return acknowledge("interactive component type " .. tostring(action.type))
  end
  local text = value_of(action)
  if not nonempty_string(text) then
    return acknowledge("an interactive " .. tostring(action.type) ..
      " without a value (a link button?)")
  end
  local user = string_or_nil(field(payload.user, "id"))
  if not user then
    return acknowledge("an interactive payload without a user")
  end
  local message, container = payload.message, payload.container
  local users = json.array()
  users[1] = user
  local metadata = {
    out_channel = string_or_nil(field(payload.channel, "id"))
      or string_or_nil(field(container, "channel_id")),
    thread_id = string_or_nil(field(message, "thread_ts")) or string_or_nil(field(message, "ts"))
      or string_or_nil(field(container, "thread_ts"))
      or string_or_nil(field(container, "message_ts")),
    users = users,
  }
  return { {
    sender_id = conversation_id(user, metadata.out_channel, metadata.thread_id),
    text = text,
    metadata = metadata,
  } }
end

-- What a slash command's form carries besides the user, channel, command and text, kept in
-- the metadata under Slack's names (not `token`: the deprecated verification token).
local COMMAND_FIELDS = { "response_url", "trigger_id", "team_id", "channel_name", "user_name",
  "api_app_id", "enterprise_id" }

-- A slash command: the text is the command and its text ("/weather Paris"), cleaned as a
-- message's text is; replies go to its channel like any other message's (no thread: a command
-- is not a message).
local function receive_command(form)
  local user = string_or_nil(form.user_id)
  if not user then
    return acknowledge("a slash command without a user_id")
  end
  local command = form.command
  local argument = clean_text(form.text or "", {})
  local users = json.array()
  users[1] = user
  local metadata = { out_channel = string_or_nil(form.channel_id), command = command,
    users = users }
  for _, key in ipairs(COMMAND_FIELDS) do
    metadata[key] = string_or_nil(form[key])
  end
  return { {
    sender_id = conversation_id(user, metadata.out_channel, nil),
    text = argument ~= "" and (command .. " " .. argument) or command,
    metadata = metadata,
  } }
end

local function receive_form(req)
  local form = req.form
  if is_ssl_check(req) then
    return acknowledge("ssl_check")
  end
  if nonempty_string(form.payload) then
    return receive_interactive(form.payload)
  end
  if nonempty_string(form.command) then
    return receive_command(form)
  end
  sb.http_error(400, "invalid_body",
    "a form-encoded Slack request needs a `payload` field (interactivity) or a `command` " ..
    "(a slash command)")
end

function channel.receive(req)
  if is_form(req) then
    return receive_form(req)
  end
  return receive_event(req)
end

-- ---- replies ---------------------------------------------------------------------------------

-- Where a reply goes: Rasa binds an output channel to each message (its out_channel, else
-- slack_channel, else the recipient; its thread when use_threads). `msg` is the UserMessage being
-- answered when the host passes it to senders (see docs/channels/slack.md, "Limitations"); without
-- it the channel and thread are read back from a channel/thread conversation id.
local function target(recipient_id, msg)
  local metadata = type(msg) == "table" and type(msg.metadata) == "table" and msg.metadata or nil
  local out_channel, thread
  if metadata then
    out_channel = string_or_nil(metadata.out_channel)
    thread = string_or_nil(metadata.thread_id)
  elseif cfg.granularity ~= "sender" and type(recipient_id) == "string" then
    local c, t = recipient_id:match("^%w+_(%w+)_(%d+%.?%d*)$")
    if not c then
      c = recipient_id:match("^%w+_(%w+)$")
    end
    out_channel, thread = c, t
  end
  local to = out_channel or cfg.slack_channel or recipient_id
  if cfg.use_threads and thread then
    return to, thread
  end
  return to, nil
end

local function post(body)
  if not cfg.token then
    error("slack: `slack_token` is not set, so replies cannot be sent", 0)
  end
  local res, err = util.request({
    method = "POST",
    url = cfg.api_url .. "/chat.postMessage",
    headers = {
      Authorization = "Bearer " .. cfg.token,
      ["Content-Type"] = "application/json; charset=utf-8",
    },
    json = body,
    timeout = cfg.timeout,
    proxy = cfg.proxy,
  })
  if not res then
    error(("slack: chat.postMessage failed: %s"):format(err), 0)
  end
  local answer = res.json
  if not util.succeeded(res) then
    error(("slack: chat.postMessage answered HTTP %d%s"):format(res.status,
      type(answer) == "table" and answer.error and (": " .. tostring(answer.error)) or ""), 0)
  end
  if type(answer) ~= "table" or answer.ok ~= true then
    error(("slack: chat.postMessage failed: %s"):format(
      type(answer) == "table" and tostring(answer.error) or "the answer is not Slack's JSON"), 0)
  end
  return answer
end

local function post_to(recipient_id, msg, body)
  local to, thread = target(recipient_id, msg)
  body.channel = to
  if thread then
    body.thread_ts = thread
  end
  return post(body)
end

-- Split on blank lines as Rasa's SlackBot does; blank parts are not sent (Slack refuses them).
function channel.send_text_message(recipient_id, text, _, msg)
  for _, part in ipairs(util.text_parts(text)) do
    post_to(recipient_id, msg, { text = part })
  end
end

function channel.send_image_url(recipient_id, image, _, msg)
  image = as_text(image)
  post_to(recipient_id, msg, {
    text = image,
    blocks = { { type = "image", image_url = image, alt_text = image } },
  })
end

local function button_element(button)
  local element = {
    type = "button",
    text = { type = "plain_text", text = as_text(button.title or button.payload or "") },
  }
  if non_null(button.payload) then
    element.value = as_text(button.payload)
  end
  if nonempty_string(button.url) then
    element.url = button.url
  end
  return element
end

-- A section with the text, then the buttons in actions blocks (at most 25 buttons each).
function channel.send_text_with_buttons(recipient_id, text, buttons, _, msg)
  local blocks = {}
  local body = {}
  if non_null(text) then
    text = as_text(text)
    body.text = text
    blocks[1] = { type = "section", text = { type = "plain_text", text = text } }
  end
  local actions
  for _, button in ipairs(type(buttons) == "table" and buttons or {}) do
    if type(button) == "table" then
      if not actions or #actions.elements == MAX_BUTTONS_PER_BLOCK then
        actions = { type = "actions", elements = {} }
        blocks[#blocks + 1] = actions
      end
      actions.elements[#actions.elements + 1] = button_element(button)
    end
  end
  body.blocks = json.array(blocks)
  post_to(recipient_id, msg, body)
end

-- A table is one of Slack's (legacy) message attachments; anything else is sent as text.
function channel.send_attachment(recipient_id, attachment, _, msg)
  if type(attachment) == "table" then
    post_to(recipient_id, msg, { attachments = { attachment } })
  else
    channel.send_text_message(recipient_id, "Attachment: " .. as_text(attachment), {}, msg)
  end
end

-- The value is the body of chat.postMessage: its own `channel` and `thread_ts` win.
function channel.send_custom_json(recipient_id, value, _, msg)
  if not util.is_object(value) then
    error("slack: custom JSON must be an object of chat.postMessage arguments", 0)
  end
  local body = util.copy(value)
  local to, thread = target(recipient_id, msg)
  if not non_null(body.channel) then
    body.channel = to
  end
  if thread and not non_null(body.thread_ts) then
    body.thread_ts = thread
  end
  post(body)
end

return channel
