-- SPDX-License-Identifier: MIT
-- What happens to one request (docs/contract.md §3.4, §4): verify, receive, the UserMessages, the
-- bot, and the answer: collected, streamed or pushed. The engine runs run() in a coroutine per
-- request; everything here may yield (the sender's turn, sb.sleep, outbound HTTP), so it is Lua.
--
-- The engine provides `host` (setup): message_begin(sender) / message_end() around each message
-- (its deadline and its sender's turn: per-sender order), stream_start(status, content_type) /
-- stream_write(text), and answer(status, content_type, body, headers) to answer before
-- processing ends (async push channels); and, when the host has them, bot_failure(kind) to count
-- a failed message, and `record` with record_calls(rec) when requests are recorded as case files
-- (switchboard run --record, recorder.lua).
--
-- Everything this file uses from outside is captured here, at load: scripts share nothing with
-- it, and a script that changes its own globals or string methods cannot change the pipeline
-- (docs/reloading-and-guards.md, "What scripts cannot do").
local type, tostring, next, ipairs, pairs, error, xpcall, pcall, setmetatable, getmetatable =
  type, tostring, next, ipairs, pairs, error, xpcall, pcall, setmetatable, getmetatable
local tointeger = math.tointeger
local format, match, find, lower = string.format, string.match, string.find, string.lower
local traceback = debug.traceback

local sb = require "switchboard"
local output = require "switchboard.output"
local message = require "switchboard.message"

local http_error, is_http_error = sb.http_error, sb.is_http_error
local log_error, log_warn, log_info, log_debug = sb.log.error, sb.log.warn, sb.log.info, sb.log.debug
local encode, decode, null = sb.json.encode, sb.json.decode, sb.json.null
local SENDERS, new_out, channel_sink, collector =
  output.SENDERS, output.new_out, output.channel_sink, output.collector
local normalize_all = message.normalize_all
local M = {}
local host, bot, recorder

function M.setup(host_functions, bot_table)
  host, bot = host_functions, bot_table
  recorder = host.record and require "switchboard.recorder" or nil
end

-- The default per-field hooks read a JSON object body (the rest channel's format).
local function json_object(req)
  local body = req.json
  -- lua-cjson decodes [] and {} alike: only an empty table needs a look at the raw body.
  if type(body) ~= "table" or body[1] ~= nil
      or (next(body) == nil and not match(req.body, "^%s*{")) then
    http_error(400, "invalid_body", "the request body must be a JSON object")
  end
  return body
end

local defaults = {}
function defaults.sender(req) return json_object(req).sender end
function defaults.message(req) return json_object(req).message end
function defaults.input_channel(req) return json_object(req).input_channel end
function defaults.metadata(req) return json_object(req).metadata end
function defaults.message_id(req) return json_object(req).message_id end
function defaults.stream(req)
  local stream = req.query.stream
  return type(stream) == "string" and lower(stream) == "true"
end
function defaults.respond(messages)
  return { status = 200, json = messages }
end
function defaults.ack()
  return { status = 200, body = "success", content_type = "text/plain" }
end

local function hook(channel, name)
  return channel[name] or defaults[name]
end

-- The per-field hooks, from the host's one list of hook names (channel_hooks.c).
local FIELD_HOOKS = require("switchboard.hooks").fields

-- A fact about a channel table, worked out once per table by `find` (a reload makes new tables,
-- so the facts of the old ones go with them).
local function known_per_channel(find)
  local known_for = setmetatable({}, { __mode = "k" })
  return function(channel)
    local known = known_for[channel]
    if known == nil then
      known = find(channel)
      known_for[channel] = known
    end
    return known
  end
end

local function defines_any(channel, names)
  for _, name in ipairs(names) do
    if channel[name] ~= nil then
      return true
    end
  end
  return false
end

-- Whether a channel overrides a per-field hook.
local overrides_a_field = known_per_channel(function(channel)
  return defines_any(channel, FIELD_HOOKS)
end)

local function default_receive(channel, req)
  if overrides_a_field(channel) then
    return { {
      sender_id = hook(channel, "sender")(req),
      text = hook(channel, "message")(req),
      input_channel = hook(channel, "input_channel")(req),
      metadata = hook(channel, "metadata")(req),
      message_id = hook(channel, "message_id")(req),
    } }
  end
  -- No field hook overridden: read the body once (the rest channel's hot path).
  local body = json_object(req)
  return { {
    sender_id = body.sender,
    text = body.message,
    input_channel = body.input_channel,
    metadata = body.metadata,
    message_id = body.message_id,
  } }
end

-- A channel that sends replies itself (docs/contract.md §4 item 3).
local pushes = known_per_channel(function(channel)
  return channel.send_response ~= nil or defines_any(channel, SENDERS)
end)

-- What a message's turn has got to: `in_bot` once the bot runs (a failure before that is the
-- channel's before_message, or the deadline while waiting for the turn).
local function process_message(channel, msg, out, turn, rec)
  host.message_begin(msg.sender_id)
  if channel.before_message then
    channel.before_message(msg)
  end
  turn.in_bot = true
  if rec then
    out = recorder.bot_turn(rec, msg, out)
  end
  bot.handle(msg, out)
end

local function log_failure(msg, err, what)
  local text = tostring(err)
  local first, trace = match(text, "^(.-)\n(stack traceback:.*)$")
  log_error("message %s of sender %s failed%s: %s", msg.message_id, msg.sender_id, what,
    first or text)
  if trace then
    log_debug("%s", trace)
  end
end

-- The errors the HTTP bot raises carry their kind (http_bot.lua); the deadline is the host's
-- cancellation text (job.c); anything else a bot raises is a script error.
local BOT_FAILURE = "switchboard.bot_failure"
local DEADLINE = "the message took longer than the response timeout"

local function first_line(v)
  local ok, text = pcall(tostring, v)
  if not ok or type(text) ~= "string" then
    text = "an error of type " .. type(v)
  end
  return match(text, "^[^\n]*")
end

local function failure_of(err)
  if getmetatable(err) == BOT_FAILURE then
    return { kind = err.kind, message = err.message, status = err.status }
  end
  local message = first_line(err)
  if type(err) == "string" and find(message, DEADLINE, 1, true) then
    return { kind = "deadline", message = message }
  end
  return { kind = "script_error", message = message }
end

-- The bot failed on msg: count it, and let the channel say so with the bot's own `out`
-- (docs/contract.md §5). An error in on_bot_error is logged; the answer stays as it is.
local function bot_failed(channel, msg, out, failure)
  local count = host.bot_failure
  if count then
    pcall(count, failure.kind)
  end
  local on_bot_error = channel.on_bot_error
  if on_bot_error then
    local ok, hook_err = xpcall(on_bot_error, traceback, msg, out, failure)
    if not ok then
      log_failure(msg, hook_err, " in on_bot_error")
    end
  end
end

-- One message through the bot, in its sender's turn and within the response timeout. A failing
-- bot (or a deadline) is logged and reported to channel.on_bot_error; what it sent before stays
-- sent. With a push channel each sender call is protected on its own, so one failed send does
-- not stop the next messages. The channel's before_message / after_message hooks run in the
-- same turn (typing indicators).
local function run_bot(channel, msg, sink, pushing, rec)
  local out = new_out(sink, msg.sender_id, pushing, msg)
  local turn = { in_bot = false }
  local ok, err = xpcall(process_message, traceback, channel, msg, out, turn, rec)
  local failure = not ok and failure_of(err) or nil
  if rec then
    recorder.bot_done(rec, turn.in_bot and failure)
  end
  if not ok then
    log_failure(msg, err, "")
    if turn.in_bot or failure.kind == "deadline" then
      bot_failed(channel, msg, out, failure)
    end
  end
  if channel.after_message then
    local after_ok, after_err = xpcall(channel.after_message, traceback, msg, ok)
    if not after_ok then
      log_failure(msg, after_err, " in after_message")
    end
  end
  host.message_end()
end

-- A response table (docs/contract.md §3.7) -> status, content type, body, headers.
local function finalize(resp)
  if type(resp) ~= "table" then
    error(format("a response must be a table, not %s", type(resp)), 0)
  end
  local status = tointeger(resp.status or 200)
  if not status or status < 100 or status > 599 then
    error(format("response status must be an integer from 100 to 599, not %s",
      tostring(resp.status)), 0)
  end
  local headers = resp.headers
  if headers ~= nil and type(headers) ~= "table" then
    error("response headers must be a table of name = value", 0)
  end
  if resp.json ~= nil then
    return status, resp.content_type or "application/json", encode(resp.json), headers
  end
  local body = resp.body or ""
  if type(body) ~= "string" then
    error(format("response body must be a string, not %s (use json = ... for tables)",
      type(body)), 0)
  end
  local content_type = resp.content_type
  if content_type == nil and body ~= "" then
    content_type = "text/plain; charset=utf-8"
  end
  return status, content_type, body, headers
end

-- ---- the inbox stream (docs/multi-host.md "Nothing acked is lost") ---------------------------
-- With the store on Redis, an async channel's messages are kept in a Redis stream before the
-- platform is answered, and acknowledged once processed; a host that finds them left by a host
-- that died runs them (inbox_run). Without the inbox (embedded store, `store: inbox: false`,
-- switchboard test) nothing changes.

local function inbox_enabled()
  local enabled = host.inbox_enabled
  return enabled ~= nil and enabled()
end

-- Keep the messages before the answer goes. Returns their entry ids, or nil when they run
-- without the inbox (Redis unreachable: the host logged and counted it; a message that is not
-- JSON: logged here). Never raises: the platform is answered whatever happens.
local function inbox_keep(channel, req, normalized)
  if #normalized == 0 or not inbox_enabled() then
    return nil
  end
  local texts = {}
  for i, msg in ipairs(normalized) do
    local ok, text = pcall(encode, msg)
    if not ok then
      log_error("message %s of sender %s is not kept in the inbox (it would not survive this "
        .. "host's end): %s", msg.message_id, msg.sender_id, first_line(text))
      return nil
    end
    texts[i] = text
  end
  local ok, ids = pcall(host.inbox_add, channel.name, req.id, texts)
  if ok then
    return ids
  end
  log_error("the inbox failed: %s", first_line(ids))
  return nil
end

-- A UserMessage as the inbox kept it (the fields of normalize, src/lua_message.c).
local function inbox_message(text)
  local ok, m = pcall(decode, text)
  if not ok or type(m) ~= "table" or type(m.sender_id) ~= "string"
      or type(m.message_id) ~= "string" then
    return nil
  end
  local function plain(v)
    if v == null then return nil end
    return v
  end
  return {
    text = plain(m.text),
    sender_id = m.sender_id,
    message_id = m.message_id,
    input_channel = plain(m.input_channel),
    metadata = plain(m.metadata),
    parse_data = plain(m.parse_data),
    headers = plain(m.headers),
  }
end

-- A claimed entry: a message another host acknowledged to its platform and did not finish. It
-- runs as it would have there (its sender's turn, the bot, the channel's senders), then is
-- acknowledged; one that cannot run (not a message, a channel that no longer sends) is logged
-- and acknowledged.
local function inbox_run(channel, text, id, request_id)
  if not host.inbox_take(id, request_id) then
    return
  end
  local msg = inbox_message(text)
  if not msg then
    log_error("claimed inbox entry %s is not a message: acknowledged without processing it", id)
  elseif not pushes(channel) then
    log_error("claimed inbox entry %s: the channel %s no longer sends replies itself: "
      .. "acknowledged without processing it", id, channel.name)
  else
    log_info("running message %s of sender %s from inbox entry %s (claimed from a host that "
      .. "stopped)", msg.message_id, msg.sender_id, id)
    run_bot(channel, msg, channel_sink(channel), true)
  end
  host.inbox_done(id)
end

local deliver

-- POST /webhooks/<name>/webhook. Returns a response table, or nil when the answer was streamed
-- or already sent. `state` tells run() what has gone out if an error comes later.
local function webhook(channel, req, state)
  if channel.verify then
    local ok, reason = channel.verify(req)
    if not ok then
      reason = reason ~= nil and tostring(reason) or "request verification failed"
      log_warn("channel %s refused the request: %s", channel.name, reason)
      if channel.reject then
        return channel.reject(req, reason)
      end
      return { status = 401, json = { error = "unauthorized", message = reason } }
    end
  end

  local messages, response
  if channel.receive then
    messages, response = channel.receive(req)
  else
    messages = default_receive(channel, req)
  end
  return deliver(channel, req, state, messages, response, "channel.receive")
end

-- The messages a webhook's receive (or a route, docs/contract.md §3.6) hands to the bot, and the
-- answer: normalized first, then each through the bot in its sender's turn, the replies
-- collected, streamed or pushed. `source` names what returned them, for errors.
function deliver(channel, req, state, messages, response, source)
  if messages == nil or messages == null then
    messages = {}
  elseif type(messages) ~= "table" then
    error(format("%s must return an array of messages, not %s", source, type(messages)), 0)
  end
  local normalized = normalize_all(messages, channel.name, req.headers)

  local rec = state.rec
  if pushes(channel) then
    local answer = response or hook(channel, "ack")(req)
    local kept
    if channel.async then
      local status, content_type, body, answer_headers = finalize(answer)
      -- In the inbox before the answer: a host that dies from now on leaves them to another.
      kept = inbox_keep(channel, req, normalized)
      host.answer(status, content_type, body, answer_headers)
      state.answered = true
      if rec then
        recorder.answered(rec, status, content_type, body, answer_headers)
      end
    end
    local sink = channel_sink(channel)
    for i, msg in ipairs(normalized) do
      run_bot(channel, msg, sink, true, rec)
      if kept then
        host.inbox_done(kept[i])
      end
    end
    if state.answered then
      return nil
    end
    return answer
  end

  if response == nil and hook(channel, "stream")(req) then
    host.stream_start(200, "text/event-stream")
    state.answered = true
    if rec then
      recorder.stream_started(rec, 200, "text/event-stream")
    end
    local sink = collector(function(shape)
      local line = encode(shape) .. "\n"
      host.stream_write(line)
      if rec then
        recorder.stream_line(rec, line)
      end
    end)
    for _, msg in ipairs(normalized) do
      run_bot(channel, msg, sink, false, rec)
    end
    return nil
  end

  local sink, collected = collector()
  for _, msg in ipairs(normalized) do
    run_bot(channel, msg, sink, false, rec)
  end
  if response ~= nil then
    return response
  end
  return hook(channel, "respond")(collected, req)
end

-- What a route returned is messages (then `response` may follow, as from channel.receive) when
-- it is an array: a table with a first element, an empty sb.json.array(), or any table followed
-- by a response; else it is a response table, as it always was.
local ARRAY_MT = getmetatable(sb.json.array())

local function is_array(v)
  return type(v) == "table" and (v[1] ~= nil or (next(v) == nil and getmetatable(v) == ARRAY_MT))
end

local function route_answer(channel, req, state, spec, first, ...)
  local second = (...)
  if is_array(first) or (type(first) == "table" and second ~= nil) then
    return deliver(channel, req, state, first, second, format("channel.routes[%q]", spec))
  end
  return first
end

-- An extra route (docs/contract.md §3.6). The host matched the request and passes the key the
-- route was declared with, so the route syntax is parsed in one place (router.c); its {name}
-- segments are req.params. A handler answers itself, or hands messages to the bot.
local function route(channel, req, state, spec)
  local handler = channel.routes[spec]
  if type(handler) ~= "function" then
    error(format("channel.routes[%q] is no longer a function", tostring(spec)), 0)
  end
  return route_answer(channel, req, state, spec, handler(req))
end

-- ---- proactive messages (docs/contract.md §2: POST /conversations/<sender_id>/messages) ------

local dispatch = output.dispatch
local MESSAGE_KEYS = { "text", "buttons", "quick_replies", "image", "attachment", "elements",
  "custom" }

local function json_kind(v)
  if v == null then return "null" end
  local t = type(v)
  if t == "table" then return is_array(v) and "an array" or "an object" end
  if t == "boolean" then return tostring(v) end
  return "a " .. t
end

-- The body: a JSON array of bot messages in Rasa's shapes, each with one of MESSAGE_KEYS.
local function push_body(req)
  local body = req.json
  if not is_array(body) then
    http_error(400, "invalid_body", format("the body must be a JSON array of bot messages "
      .. "(such as [{\"text\": \"hi\"}]), not %s", json_kind(body)))
  end
  for i, m in ipairs(body) do
    if type(m) ~= "table" or is_array(m) then
      http_error(400, "invalid_body", format("message %d must be an object, not %s", i,
        json_kind(m)))
    end
    local known = false
    for _, key in ipairs(MESSAGE_KEYS) do
      known = known or output.present(m[key])
    end
    if not known then
      http_error(400, "invalid_body", format("message %d has none of the keys of a bot message: "
        .. "text, buttons, quick_replies, image, attachment, elements, custom", i))
    end
    if m.text ~= nil and m.text ~= null and type(m.text) ~= "string" then
      http_error(400, "invalid_body", format("message %d: text must be a string, not %s", i,
        json_kind(m.text)))
    end
  end
  return body
end

local function push_turn(sink, msg, messages)
  host.message_begin(msg.sender_id)
  local count = #messages
  for i, m in ipairs(messages) do
    local ok, err = pcall(dispatch, sink, msg.sender_id, m, msg)
    if not ok then
      local text = first_line(err)
      log_error("proactive message %d of %d to %s failed: %s", i, count, msg.sender_id, text)
      if find(text, DEADLINE, 1, true) then
        if i < count then
          log_error("proactive messages %d to %d to %s were not sent", i + 1, count,
            msg.sender_id)
        end
        return
      end
    end
  end
end

-- Send bot messages (Rasa's shapes) to sender_id through the channel's senders, each dispatched
-- as a bot message is (docs/contract.md §4.1), in the sender's turn: after the sender's messages
-- that came first, before those that come later, within the response timeout. A message whose
-- sender fails is logged and the next one goes. The senders get as `msg` a UserMessage with the
-- sender_id, input_channel (the channel's name) and message_id (the request id), no text and no
-- metadata (so Slack reads the place from a channel or thread conversation id).
function M.push(channel, sender_id, messages, request_id)
  local msg = { sender_id = sender_id, input_channel = channel.name, message_id = request_id }
  local ok, err = xpcall(push_turn, traceback, channel_sink(channel), msg, messages)
  if not ok then
    log_failure(msg, err, " (proactive messages, not sent)")
  end
  host.message_end()
end

-- The job of a proactive post: the host checked the token, the channel and the content type.
-- The channel must push; the body is checked whole, then answered 202, then sent.
local function push_request(channel, req, state, sender_id)
  if not pushes(channel) then
    http_error(409, "cannot_push", format("the channel '%s' has no senders: it answers in the "
      .. "HTTP response, so it cannot send proactive messages", channel.name))
  end
  local messages = push_body(req)
  local id = req.id
  local status, content_type, body = finalize({ status = 202, json = {
    request_id = id, channel = channel.name, sender_id = sender_id, messages = #messages } })
  host.answer(status, content_type, body)
  state.answered = true
  M.push(channel, sender_id, messages, id)
end

local function error_answer(status, code, text)
  return finalize({ status = status, json = { error = code, message = text } })
end

-- The upgrade request of the channel's WebSocket route: on_open(conn, req) may refuse it by
-- returning a response table (or raising: a 500); anything else accepts, and the host answers
-- 101 (docs/lua-api.md, "Connections").
local SWITCHING_PROTOCOLS = 101

local function websocket_open(channel, req, conn)
  local on_open = channel.on_open
  if on_open then
    local resp = on_open(conn, req)
    if type(resp) == "table" then
      return resp
    end
  end
  return SWITCHING_PROTOCOLS
end

local function handle(kind, channel, req, state, spec, conn)
  local resp
  if kind == "webhook" then
    resp = webhook(channel, req, state)
  elseif kind == "push" then
    resp = push_request(channel, req, state, spec)
  elseif kind == "websocket" then
    resp = websocket_open(channel, req, conn)
    if resp == SWITCHING_PROTOCOLS then
      return SWITCHING_PROTOCOLS
    end
  else
    resp = route(channel, req, state, spec)
  end
  if state.answered then
    return nil
  end
  return finalize(resp)
end

local function keep_http_errors(err)
  if is_http_error(err) then
    return err
  end
  return traceback(tostring(err), 2)
end

local function run(kind, channel, req, spec, rec, conn)
  local state = { rec = rec }
  local ok, status, content_type, body, headers =
    xpcall(handle, keep_http_errors, kind, channel, req, state, spec, conn)
  if ok then
    return status, content_type, body, headers
  end
  local err = status
  if state.answered then
    log_error("channel %s failed after answering: %s", channel.name, tostring(err))
    return
  end
  if is_http_error(err) then
    log_info("%s %s: %d %s: %s", req.method, req.path, err.status, err.error, err.message)
    return error_answer(err.status, err.error, err.message)
  end
  log_error("channel %s failed: %s", channel.name, err)
  return error_answer(500, "channel_error",
    format("the channel '%s' failed to handle the request; the log has the details under "
      .. "request id %s", channel.name, req.id))
end

-- The engine's entry: kind is "webhook" or "route" (then spec is the key of channel.routes the
-- request matched); "push" (a proactive post), "websocket" (an upgrade), or "inbox" (an entry
-- of the inbox stream claimed from a host that stopped: no request, see inbox_run). Returns status, content type, body, headers (what job.c checks and sends);
-- or nothing when the answer was streamed or sent earlier. When requests are recorded, the
-- request and everything it caused become a case file as it ends.
function M.run(kind, channel, req, spec, conn)
  if kind == "inbox" then -- a claimed inbox entry: req is the message's JSON, spec its id, conn
    return inbox_run(channel, req, spec, conn) -- the request id
  end
  if kind == "push" then -- a proactive post (spec is the sender): not a case file to replay
    return run(kind, channel, req, spec)
  end
  if kind == "websocket" then
    return run(kind, channel, req, spec, nil, conn)
  end
  if not recorder then
    return run(kind, channel, req, spec)
  end
  local ok, rec = pcall(recorder.begin, host.record, channel, req)
  if not ok then
    log_warn("the request will not be recorded: %s", tostring(rec))
    return run(kind, channel, req, spec)
  end
  host.record_calls(rec)
  return recorder.finish(rec, run(kind, channel, req, spec, rec))
end

-- ---- connections (docs/lua-api.md, "Connections") --------------------------------------------

-- Where the bot's replies to a connection's message go: the channel's senders when it has any
-- (they reach the sender's connections, sb.connections.send), else each bot message as JSON
-- text on the connection the message came in on.
local push_sinks = known_per_channel(function(channel)
  return pushes(channel) and channel_sink(channel) or false
end)

local function connection_sink(channel, conn)
  local push_sink = push_sinks(channel)
  if push_sink then
    return push_sink, true
  end
  local sink = collector(function(shape)
    conn:send(encode(shape))
  end)
  return sink, false
end

-- A message on the connection: on_message(conn, data, binary) returns the messages for the bot
-- (as receive does), each run like a webhook's, in its sender's turn.
local function connection_message(channel, conn, data, binary)
  local messages = channel.on_message(conn, data, binary)
  if messages == nil or messages == null then
    return
  end
  if type(messages) ~= "table" then
    error(format("channel.on_message must return an array of messages or nothing, not %s",
      type(messages)), 0)
  end
  local normalized = normalize_all(messages, channel.name, nil)
  local sink, pushing = connection_sink(channel, conn)
  for i = 1, #normalized do
    run_bot(channel, normalized[i], sink, pushing)
  end
end

local function connection_closed(channel, conn, code, reason)
  if channel.on_close then
    channel.on_close(conn, code, reason)
  end
end

-- The engine's entry for a connection's events, one at a time per connection: "message" (data,
-- binary) and "close" (code, reason). An error is logged; the connection stays open.
function M.connection(event, channel, conn, a, b)
  local handler = event == "message" and connection_message or connection_closed
  local ok, err = xpcall(handler, keep_http_errors, channel, conn, a, b)
  if not ok then
    if is_http_error(err) then
      log_warn("channel %s refused a message on connection %s: %d %s: %s", channel.name,
        conn.id, err.status, err.error, err.message)
    else
      log_error("channel %s failed on connection %s (%s): %s", channel.name, conn.id, event,
        tostring(err))
    end
  end
end

return M
