-- SPDX-License-Identifier: MIT
-- socketio: Rasa's SocketIOInput (docs/channels/socketio.md), for chat widgets on web pages.
--
-- Engine.IO v4 and Socket.IO v5 (what socket.io-client 4 speaks) at `socketio_path` (default
-- /socket.io), over HTTP long-polling and over WebSocket, with the upgrade from one to the other
-- that the client makes by default. The host does the WebSocket framing; this file speaks the
-- two protocols on top. A polling session lives in sb.store (any worker may take its next
-- request): its packets wait in the list eio:out:<sid>, which a poll pops with a wait. A
-- WebSocket session lives on its connection (conn.data); what is emitted to its rooms reaches it
-- through sb.connections.send, from any worker and, with the Redis store, from any host.
--
-- Events, as Rasa: session_request -> session_confirm; user_message_evt (user_uttered) -> the
-- bot; each bot message -> bot_message_evt (bot_uttered) in Rasa's shapes, to the room of the
-- recipient (the socket's id, or with session_persistence the session_id).
--
-- credentials.yml:
--   socketio:
--     user_message_evt: user_uttered
--     bot_message_evt: bot_uttered
--     session_persistence: false
--     socketio_path: /socket.io
--     metadata_key: customData
--     jwt_key: ...              # then a client must connect with auth {token: <JWT>}
--     jwt_method: HS256         # or HS384/512, RS/PS256/384/512, ES256/384 (jwt_key a PEM key)
local sb = require "switchboard"
local util = require "switchboard.channel"

local json, store = sb.json, sb.store
local send_to_room, text_parts = sb.connections.send, util.text_parts
local encode, decode, array, null = json.encode, json.decode, json.array, json.null

local channel = { name = "socketio", async = true, websocket = "/" }

channel.parameters = {
  user_message_evt = { type = "string", default = "user_uttered" },
  bot_message_evt = { type = "string", default = "bot_uttered" },
  session_persistence = { type = "flag", default = false },
  socketio_path = { type = "string", default = "/socket.io" },
  metadata_key = { type = "string", default = "customData" },
  jwt_key = { type = "string", secret = true },
  jwt_method = { type = "string", default = "HS256", choices = { "HS256", "HS384", "HS512",
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384" } },
  namespace = { type = "string" },
  ping_interval = { type = "seconds", default = 25 },
  ping_timeout = { type = "seconds", default = 20 },
}

local cfg = {}

local RS = "\30" -- Engine.IO's record separator between packets of one poll
local byte, sub, find = string.byte, string.sub, string.find
local CLOSE, PING, MESSAGE = byte("1"), byte("2"), byte("4") -- Engine.IO packet types
local SLASH, ZERO, NINE, BRACKET = byte("/"), byte("0"), byte("9"), byte("[")
local EVENT = byte("2") -- Socket.IO's packet type
local MAX_PAYLOAD = 1000000
local MAX_WAITING = 1000 -- packets waiting for a poll: past it the session no longer polls

-- ---- sessions ---------------------------------------------------------------------------------

local function session_ttl()
  return (cfg.ping_interval + cfg.ping_timeout) * 2
end

local function open_packet(sid, upgrades)
  return "0" .. encode({ sid = sid, upgrades = array(upgrades), maxPayload = MAX_PAYLOAD,
    pingInterval = math.floor(cfg.ping_interval * 1000),
    pingTimeout = math.floor(cfg.ping_timeout * 1000) })
end

local function room_key(room) return "sio:room:" .. room end
local function outbox(sid) return "eio:out:" .. sid end

-- A packet for a polling session waits in its list until the next poll; returns the list's
-- length.
local function queue_for_poll(sid, packet)
  local waiting = store.push(outbox(sid), packet)
  store.expire(outbox(sid), session_ttl())
  return waiting
end

-- A polling session's packets wait in its list; a WebSocket session's go out at once.
local function send(session, packet)
  if session.conn then
    session.conn:send(packet)
  else
    queue_for_poll(session.sid, packet)
  end
end

-- Everything sent to a room reaches its members: WebSocket sessions through their bindings,
-- polling sessions through the list of members kept in the store.
local function join(session, room)
  session.state.rooms[#session.state.rooms + 1] = room
  if session.conn then
    session.conn:bind(room)
    return
  end
  local members = store.get(room_key(room))
  if type(members) ~= "table" then members = {} end
  members[#members + 1] = session.sid
  store.set(room_key(room), array(members), session_ttl())
end

local function leave_polling_rooms(sid, rooms)
  for _, room in ipairs(rooms or {}) do
    local members = store.get(room_key(room))
    if type(members) == "table" then
      local kept = array()
      for _, m in ipairs(members) do
        if m ~= sid then kept[#kept + 1] = m end
      end
      if #kept > 0 then store.set(room_key(room), kept, session_ttl()) else store.del(room_key(room)) end
    end
  end
end

-- A finished packet to the room: its WebSocket members through the host, its polling ones
-- through their outboxes.
local function emit(room, packet)
  send_to_room(room, packet)
  local members = store.get("sio:room:" .. room) -- room_key(room) inline: every bot message
  if type(members) == "table" then
    for _, sid in ipairs(members) do
      local waiting = queue_for_poll(sid, packet)
      if waiting and waiting > MAX_WAITING then
        -- Nobody has polled for a long while: the session is gone, its packets with it.
        store.del(outbox(sid))
        leave_polling_rooms(sid, { room })
      end
    end
  end
end

-- ---- JWT ---------------------------------------------------------------------------------------

-- Whether a client's token is valid for jwt_key and jwt_method (sb.jwt: signature, exp, nbf,
-- iat); else false and why. An HS method takes jwt_key as the secret, the others as a PEM
-- public key (or a JWK), as Rasa's PyJWT does.
local function jwt_valid(token)
  if type(token) ~= "string" then return false, "no token" end
  local opts = { algorithms = { cfg.jwt_method } }
  if cfg.jwt_method:sub(1, 2) == "HS" then opts.secret = cfg.jwt_key else opts.key = cfg.jwt_key end
  local ok, claims, reason = pcall(sb.jwt.verify, token, opts)
  if not ok then return false, tostring(claims) end
  return claims ~= nil, reason
end

-- ---- Socket.IO packets ------------------------------------------------------------------------

-- "42/chat,12[...]" from byte `at` on (the "4" of Engine.IO before it): the Socket.IO type, the
-- namespace, the ack id, the data. Byte by byte, as this runs for every message.
local function parse_sio(p, at)
  local kind = sub(p, at, at)
  local i, ns = at + 1, "/"
  if byte(p, i) == SLASH then
    local comma = find(p, ",", i, true)
    ns = sub(p, i, (comma or #p + 1) - 1)
    i = comma and comma + 1 or #p + 1
  end
  local digits = i
  while true do
    local b = byte(p, i)
    if not b or b < ZERO or b > NINE then break end
    i = i + 1
  end
  return kind, ns, i > digits and sub(p, digits, i - 1) or nil, sub(p, i)
end

local function namespace_ok(ns)
  return ns == (cfg.namespace or "/")
end

local function ns_prefix(ns)
  return ns == "/" and "" or ns .. ","
end

local function sio_connect(session, ns, body)
  if not namespace_ok(ns) then
    send(session, "44" .. ns_prefix(ns) .. encode({ message = "Invalid namespace" }))
    return
  end
  if cfg.jwt_key then
    local ok, auth = pcall(decode, body ~= "" and body or "null")
    local valid, reason = false, "no auth object"
    if ok and type(auth) == "table" then valid, reason = jwt_valid(auth.token) end
    if not valid then
      sb.log.info("socketio: a client without a valid token was refused (%s)", tostring(reason))
      send(session, "44" .. ns_prefix(ns) .. encode({ message = "Connection rejected by server" }))
      return
    end
  end
  local state = session.state
  state.sock = state.sock or sb.uuid()
  state.connected = true
  join(session, state.sock)
  send(session, "40" .. ns_prefix(ns) .. encode({ sid = state.sock }))
end

-- An event packet; returns the user message it carries for the bot, if any.
local function sio_event(session, ns, ack, body)
  local ok, args = pcall(decode, body)
  if not ok or type(args) ~= "table" or type(args[1]) ~= "string" then
    return
  end
  local state = session.state
  local event, data, message = args[1], args[2], nil
  if type(data) ~= "table" then data = {} end
  if event == "session_request" then
    local session_id = data.session_id
    if session_id == nil or session_id == null or session_id == "" then
      session_id = sb.uuid()
    end
    session_id = tostring(session_id)
    if cfg.session_persistence then
      join(session, session_id)
    end
    send(session, "42" .. ns_prefix(ns) .. encode(array({ "session_confirm", session_id })))
  elseif event == cfg.user_message_evt then
    local sender = state.sock
    if cfg.session_persistence then
      local sid = data.session_id
      if sid == nil or sid == null or sid == "" then
        sb.log.warn("socketio: a message without a valid session_id was received; it is " ..
          "answered to its socket (%s)", tostring(state.sock))
      else
        sender = type(sid) == "string" and sid or tostring(sid)
      end
    end
    local metadata = data[cfg.metadata_key]
    local metadata_type = type(metadata)
    if metadata_type == "string" then
      local decoded_ok, value = pcall(decode, metadata)
      metadata = decoded_ok and value or nil
      metadata_type = type(metadata)
    end
    local text = data.message
    if text == null then text = nil end
    if type(text) ~= "string" then
      text = text ~= nil and tostring(text) or ""
    end
    message = { sender_id = sender, text = text,
      metadata = metadata_type == "table" and metadata or nil }
  end
  if ack then
    send(session, "43" .. ns_prefix(ns) .. ack .. "[]")
  end
  return message
end

local function sio_packet(session, p)
  local kind, ns, ack, body = parse_sio(p, 2)
  if kind == "0" then
    sio_connect(session, ns, body)
  elseif kind == "2" and session.state.connected then
    return sio_event(session, ns, ack, body)
  elseif kind == "1" then
    session.state.connected = false
  end
end

-- One Engine.IO packet from the client; returns the user message it carries, if any.
local function engine_packet(session, p)
  local kind, second, third = byte(p, 1, 3)
  if kind == MESSAGE then
    if second == EVENT and third == BRACKET then -- 42[...]: an event on "/", no ack
      if session.state.connected then return sio_event(session, "/", nil, sub(p, 3)) end
      return nil
    end
    return sio_packet(session, p)
  elseif kind == CLOSE then
    session.closing = true
  elseif kind == PING then
    send(session, "3" .. sub(p, 2))
  end
end

-- ---- HTTP long-polling ------------------------------------------------------------------------

local function engine_error(code, message)
  return { status = 400, json = { code = code, message = message } }
end

local function text(body)
  return { status = 200, content_type = "text/plain; charset=UTF-8", body = body }
end

-- The polling session of a request, or the error to answer with.
local function polling_session(req)
  local q = req.query
  if q.EIO ~= "4" then return nil, engine_error(5, "Unsupported protocol version") end
  if q.transport ~= "polling" then return nil, engine_error(0, "Transport unknown") end
  local sid = q.sid
  if not sid then return nil end
  local state = store.get("eio:" .. sid)
  if type(state) ~= "table" then return nil, engine_error(1, "Session ID unknown") end
  if type(state.rooms) ~= "table" then state.rooms = array() end
  return { sid = sid, state = state }
end

local function save(session)
  if session.closing then
    leave_polling_rooms(session.sid, session.state.rooms)
    store.del("eio:" .. session.sid)
    store.del(outbox(session.sid))
    return
  end
  store.set("eio:" .. session.sid, session.state, session_ttl())
end

-- GET: the handshake (no sid), or a poll: the waiting packets, or a ping after ping_interval.
local function poll(req)
  local session, err = polling_session(req)
  if err then return err end
  if not session then
    local sid = sb.uuid()
    store.set("eio:" .. sid, { transport = "polling", rooms = array() }, session_ttl())
    return text(open_packet(sid, { "websocket" }))
  end
  if session.state.transport ~= "polling" then
    return text("6") -- upgraded meanwhile: this poll ends with a noop
  end
  local first = store.pop(outbox(session.sid), cfg.ping_interval)
  local packets = { first or "2" }
  local size = #packets[1]
  while size < MAX_PAYLOAD do
    local p = store.pop(outbox(session.sid))
    if p == nil then break end
    packets[#packets + 1] = p
    size = size + #p + 1
  end
  store.expire("eio:" .. session.sid, session_ttl())
  return text(table.concat(packets, RS))
end

-- POST: packets from the client; user messages go to the bot (the answer "ok" goes first).
local function post(req)
  local session, err = polling_session(req)
  if err then return err end
  if not session then return engine_error(1, "Session ID unknown") end
  local messages = array()
  for p in (req.body .. RS):gmatch("([^" .. RS .. "]*)" .. RS) do
    if p ~= "" then messages[#messages + 1] = engine_packet(session, p) end
  end
  save(session)
  return messages, { status = 200, content_type = "text/html", body = "ok" }
end

-- ---- WebSocket --------------------------------------------------------------------------------

-- The session object of each WebSocket connection, made at its first message instead of at
-- every one. Not in conn.data: that is carried to new scripts at a reload as JSON, which cannot
-- hold the connection; this table starts empty with the new scripts.
local ws_sessions = setmetatable({}, { __mode = "k" })

function channel.on_open(conn, req)
  local q = req.query
  if q.EIO ~= "4" then return engine_error(5, "Unsupported protocol version") end
  if q.transport ~= "websocket" then return engine_error(0, "Transport unknown") end
  if q.sid then
    local state = store.get("eio:" .. q.sid)
    if type(state) ~= "table" or state.transport ~= "polling" then
      return engine_error(1, "Session ID unknown")
    end
    conn.data.upgrading = q.sid -- the probe, then "5", make this connection the session's
    return
  end
  conn.data.state = { rooms = array() }
  conn:send(open_packet(conn.id, {}))
  conn:keepalive(cfg.ping_interval, "2")
end

-- The client confirmed the upgrade: the polling session moves onto this connection.
local function finish_upgrade(conn, sid)
  local state = store.get("eio:" .. sid)
  if type(state) ~= "table" then
    conn:close(1000, "session gone")
    return
  end
  state.transport = "websocket"
  store.set("eio:" .. sid, state, session_ttl())
  leave_polling_rooms(sid, state.rooms)
  for _, room in ipairs(state.rooms or {}) do conn:bind(room) end
  conn.data.state = { rooms = state.rooms or array(), sock = state.sock,
    connected = state.connected }
  ws_sessions[conn] = nil -- its state is a new table
  conn.data.sid = sid
  conn.data.upgrading = nil
  -- What waited for the next poll goes over the new transport; the poll itself ends with "6".
  while true do
    local p = store.pop(outbox(sid))
    if p == nil then break end
    conn:send(p)
  end
  queue_for_poll(sid, "6")
  conn:keepalive(cfg.ping_interval, "2")
end

function channel.on_message(conn, data, binary)
  if binary then return end
  local conn_data = conn.data
  local upgrading = conn_data.upgrading
  if upgrading then
    if data == "2probe" then
      conn:send("3probe")
      -- The client now waits for its pending poll to end before it sends "5": end it (as
      -- Engine.IO servers do, with a noop) instead of letting it wait for ping_interval.
      queue_for_poll(upgrading, "6")
    elseif data == "5" then
      finish_upgrade(conn, upgrading)
    end
    return
  end
  -- Over WebSocket each frame is one Engine.IO packet (no record separators).
  local session = ws_sessions[conn]
  if not session then
    session = { conn = conn, state = conn_data.state }
    ws_sessions[conn] = session
  end
  local message = engine_packet(session, data)
  if session.closing then
    conn:close(1000, "")
  end
  if message then return { message } end
end

function channel.on_close(conn)
  local sid = conn.data.sid
  if sid then
    store.del("eio:" .. sid)
    store.del(outbox(sid))
  end
end

-- ---- bot messages, as Rasa's SocketIOOutput sends them ---------------------------------------

local bot_event_head -- '42["bot_uttered",' (init)
local text_event_head -- '42["bot_uttered",{"text":' (init)

local function bot_event(recipient, message)
  if message == nil then -- the event alone, as socket.io sends an event without arguments
    emit(recipient, sub(bot_event_head, 1, -2) .. "]")
  else
    emit(recipient, bot_event_head .. encode(message) .. "]")
  end
end

-- The most common bot message: its packet is put together without a table to encode.
function channel.send_text_message(recipient, text)
  local parts = text_parts(text)
  for i = 1, #parts do
    emit(recipient, text_event_head .. encode(parts[i]) .. "}]")
  end
end

function channel.send_image_url(recipient, image)
  bot_event(recipient, { attachment = { type = "image", payload = { src = image } } })
end

local function quick_replies(buttons)
  local out = array()
  for i, b in ipairs(buttons or {}) do
    out[i] = { content_type = "text", title = b.title, payload = b.payload }
  end
  return out
end

function channel.send_text_with_buttons(recipient, text, buttons)
  bot_event(recipient, { text = text, quick_replies = quick_replies(buttons) })
end

function channel.send_quick_replies(recipient, text, replies)
  bot_event(recipient, { text = text, quick_replies = quick_replies(replies) })
end

function channel.send_elements(recipient, elements)
  for _, element in ipairs(elements or {}) do
    bot_event(recipient, { attachment = { type = "template",
      payload = { template_type = "generic", elements = element } } })
  end
end

function channel.send_custom_json(recipient, value)
  -- Rasa emits the custom payload's keys as the event's arguments: its `data` is what the
  -- client gets.
  if type(value) == "table" and value.data ~= nil then
    value = value.data
  end
  bot_event(recipient, value)
end

function channel.send_attachment(recipient, attachment)
  bot_event(recipient, { attachment = attachment })
end

function channel.init(config)
  local v = util.params(config, channel):values()
  cfg = v
  bot_event_head = "42[" .. encode(v.bot_message_evt) .. ","
  text_event_head = bot_event_head .. '{"text":'
  local path = v.socketio_path
  if path:sub(1, 1) ~= "/" then path = "/" .. path end
  channel.mount = path
  channel.routes = { ["GET /"] = poll, ["POST /"] = post }
end

return channel
