-- SPDX-License-Identifier: MIT
-- `switchboard run --record DIR` (docs/testing.md, "Recording live traffic"): each request a
-- channel receives becomes a case file for `switchboard test`: the request, the UserMessages the
-- bot got, what the bot answered (replayed by the case bot as `bot: turns:`), the platform's
-- answers to the channel's outbound calls, and the answer. Secrets are redacted: the channel's
-- secret parameters become `redacted-<name>` everywhere they appear, `Authorization` and cookies
-- are hidden, and signature headers are dropped for `sign:`, which re-signs at replay with the
-- redacted secret.
--
-- The pipeline makes one recording per request (begin), marks the bot's turns (bot_turn,
-- bot_done) and the answer, and writes the file when the request ends (finish). The outbound
-- calls are added by the host (lua_sb_http.c) to `calls`, except while `paused` (the bot's own
-- calls, such as the HTTP bot's request to Rasa, are not the channel's).
local type, pairs, ipairs, next, pcall, error, select, tostring, setmetatable =
  type, pairs, ipairs, next, pcall, error, select, tostring, setmetatable
local format, find, sub, match, gsub, gmatch = string.format, string.find, string.sub,
  string.match, string.gsub, string.gmatch
local sort, concat, pack, unpack = table.sort, table.concat, table.pack, table.unpack
local io_open, os_rename, os_remove, os_date, os_time = io.open, os.rename, os.remove, os.date,
  os.time

local sb = require "switchboard"
local encode, decode, null, array = sb.json.encode, sb.json.decode, sb.json.null, sb.json.array
local urlencode = sb.urlencode
local log_warn, log_info = sb.log.warn, sb.log.info

local M = {}

-- ---- secrets ------------------------------------------------------------------------------------

-- The channel's parameters whose values are secret: those its declaration marks `secret`; for a
-- parameter it does not declare, every text value that is not a URL. Values shorter than three
-- characters are not treated as secrets (replacing them would change unrelated text).
local function secrets_of(channel, params)
  local declared = type(channel.parameters) == "table" and channel.parameters or nil
  local list = {}
  for name, value in pairs(type(params) == "table" and params or {}) do
    if type(name) == "string" and type(value) == "string" and #value >= 3 then
      local spec = declared and declared[name]
      local secret
      if type(spec) == "table" then
        secret = spec.secret == true
      else
        secret = not find(value, "^%a[%w+.-]*://")
      end
      if secret then
        list[#list + 1] = { value = value, placeholder = "redacted-" .. name }
      end
    end
  end
  -- Values the channel computes from its secrets (Messenger's appsecret_proof): what it computes
  -- from the real values is replaced by what it computes from the placeholders, which is what
  -- the replay, configured with the placeholders, sends.
  if type(channel.derived_secrets) == "function" then
    local redacted = {}
    for name, value in pairs(type(params) == "table" and params or {}) do redacted[name] = value end
    for _, s in ipairs(list) do
      for name, value in pairs(redacted) do
        if value == s.value then redacted[name] = s.placeholder end
      end
    end
    local ok_real, real = pcall(channel.derived_secrets, params or {})
    local ok_redacted, replayed = pcall(channel.derived_secrets, redacted)
    if ok_real and ok_redacted and type(real) == "table" and type(replayed) == "table" then
      for name, value in pairs(real) do
        if type(value) == "string" and #value >= 3 and type(replayed[name]) == "string" then
          list[#list + 1] = { value = value, placeholder = replayed[name] }
        end
      end
    end
  end
  -- Longer values first, so a secret that contains another is replaced whole.
  sort(list, function(a, b) return #a.value > #b.value end)
  return list
end

local function replace_plain(text, old, new)
  local out, start = {}, 1
  while true do
    local i, j = find(text, old, start, true)
    if not i then break end
    out[#out + 1] = sub(text, start, i - 1)
    out[#out + 1] = new
    start = j + 1
  end
  if start == 1 then return text end
  out[#out + 1] = sub(text, start)
  return concat(out)
end

-- The text with every secret (as it is, and URL-encoded) replaced by its placeholder.
local function redact_text(text, secrets)
  for _, s in ipairs(secrets) do
    text = replace_plain(text, s.value, s.placeholder)
    local encoded = urlencode(s.value)
    if encoded ~= s.value then
      text = replace_plain(text, encoded, s.placeholder)
    end
  end
  return text
end

-- A copy of a value made of JSON types, secrets redacted in every string (keys too). Anything
-- JSON cannot hold is shown as text; depth is bounded.
local function redact(v, secrets, depth)
  depth = depth or 0
  if type(v) == "string" then
    return redact_text(v, secrets)
  end
  if type(v) ~= "table" then
    if v == nil or v == null or type(v) == "number" or type(v) == "boolean" then
      return v == nil and null or v
    end
    return tostring(v)
  end
  if depth > 50 then
    return "(nested too deeply)"
  end
  local copy = {}
  for k, item in pairs(v) do
    if type(k) == "string" then
      copy[redact_text(k, secrets)] = redact(item, secrets, depth + 1)
    elseif type(k) == "number" then
      copy[k] = redact(item, secrets, depth + 1)
    end
  end
  if next(v) == nil then
    local ok, text = pcall(encode, v)
    if ok and text == "[]" then array(copy) end
  end
  return copy
end

-- ---- JSON bodies --------------------------------------------------------------------------------

-- A body as `json` when it is a JSON object or array, else as `body`; into `into`.
local function put_body(into, body, secrets)
  if type(body) ~= "string" or body == "" then
    return
  end
  local first = match(body, "^%s*(.)")
  if first == "{" or first == "[" then
    local ok, value = pcall(decode, body)
    if ok and type(value) == "table" then
      into.json = redact(value, secrets)
      return
    end
  end
  into.body = redact_text(body, secrets)
end

-- ---- the request --------------------------------------------------------------------------------

-- Signature headers, by the `sign:` scheme that re-creates them (cases.lua).
local SIGNATURES = {
  ["x-slack-signature"] = "slack", ["x-slack-request-timestamp"] = "slack",
  ["x-hub-signature-256"] = "facebook", ["x-hub-signature"] = "facebook",
  ["x-twilio-signature"] = "twilio", ["x-telegram-bot-api-secret-token"] = "telegram",
  ["x-spark-signature"] = "webexteams",
}
-- Headers that describe the connection, not the request: a replay sets its own.
local CONNECTION = { ["content-length"] = true, connection = true, ["transfer-encoding"] = true,
  ["keep-alive"] = true, te = true, upgrade = true, expect = true }

local function request_of(rec, req)
  local secrets = rec.secrets
  local out = { channel = rec.channel.name, method = req.method }
  local prefix = "/webhooks/" .. rec.channel.name
  local path = req.path or "/"
  if sub(path, 1, #prefix) == prefix then
    path = sub(path, #prefix + 1)
  end
  out.path = redact_text(path, secrets)
  local query = {}
  for k, v in pairs(req.query or {}) do query[redact_text(k, secrets)] = redact_text(v, secrets) end
  if next(query) then out.query = query end
  local headers, sign = {}, nil
  for name, value in pairs(req.headers or {}) do
    if SIGNATURES[name] then
      sign = SIGNATURES[name]
    elseif name == "authorization" or name == "proxy-authorization" then
      local redacted = redact_text(value, secrets)
      headers[name] = redacted ~= value and redacted or "REDACTED"
    elseif name == "cookie" then
      headers[name] = "REDACTED"
    elseif not CONNECTION[name] then
      headers[name] = redact_text(value, secrets)
    end
  end
  -- The replay runs with the id this request had (an error answer names it).
  headers["x-request-id"] = headers["x-request-id"] or req.id
  out.headers = headers
  out.sign = sign
  put_body(out, req.body, secrets)
  return out
end

-- ---- a recording --------------------------------------------------------------------------------

-- config: host.record ({dir =, channels = {[name] = {key =, file =, params =}}}).
function M.begin(config, channel, req)
  local def = config.channels[channel.name] or {}
  local rec = {
    config = config, channel = channel, def = def, calls = {}, turns = {}, messages = {},
    lines = nil, answer = nil, paused = false, started = os_time(), id = req.id,
  }
  rec.secrets = secrets_of(channel, def.params)
  rec.request = request_of(rec, req)
  return rec
end

-- A copy of what the bot sent, for the case bot to send again.
local function reply_of(rec, name, ...)
  if name == "send_response" then
    return redact((...), rec.secrets)
  end
  local n, args = select("#", ...), array()
  while n > 0 and select(n, ...) == nil do n = n - 1 end
  for i = 1, n do
    args[i] = redact((select(i, ...)), rec.secrets)
  end
  return { out = name, args = args }
end

-- The bot is about to handle msg with `out`: returns the `out` to give it, which records each
-- sender call as a reply of this turn. The bot's own outbound calls are not recorded.
function M.bot_turn(rec, msg, out)
  local copy = redact(msg, rec.secrets)
  copy.headers = nil -- the request's, recorded once above
  local id = copy.message_id
  if type(id) == "string" and #id == 32 and match(id, "^%x+$") then
    copy.message_id = nil -- made up by the host: a replay makes another
  end
  rec.messages[#rec.messages + 1] = copy
  local turn = { replies = array() }
  rec.turns[#rec.turns + 1] = turn
  rec.turn = turn
  rec.paused = true
  local proxy = {}
  return setmetatable(proxy, {
    __metatable = false,
    __index = function(_, name)
      local value = out[name]
      if type(value) ~= "function" then
        return value
      end
      return function(self, ...)
        if self ~= proxy then
          return value(self, ...)
        end
        turn.replies[#turn.replies + 1] = reply_of(rec, name, ...)
        rec.paused = false -- a sender's calls are the channel's
        local results = pack(pcall(value, out, ...))
        rec.paused = true
        if not results[1] then
          error(results[2], 0)
        end
        return unpack(results, 2, results.n)
      end
    end,
  })
end

-- The bot's turn ended; `failure` ({kind, message, status}) when it failed.
function M.bot_done(rec, failure)
  rec.paused = false
  if failure and rec.turn then
    rec.turn.fail = redact({ kind = failure.kind, message = failure.message,
      status = failure.status }, rec.secrets)
  end
  rec.turn = nil
end

function M.answered(rec, status, content_type, body, headers)
  rec.answer = { status = status, content_type = content_type, body = body, headers = headers }
end

function M.stream_started(rec, status, content_type)
  rec.answer = { status = status, content_type = content_type }
  rec.lines = {}
end

function M.stream_line(rec, text)
  if rec.lines then
    rec.lines[#rec.lines + 1] = text
  end
end

-- ---- the case file --------------------------------------------------------------------------------

local function expectation(rec)
  local answer, secrets = rec.answer, rec.secrets
  local expect = { status = answer.status, content_type = answer.content_type }
  if type(answer.headers) == "table" and next(answer.headers) then
    expect.headers = redact(answer.headers, secrets)
  end
  if rec.lines then
    local lines = array()
    for _, text in ipairs(rec.lines) do
      local line = match(text, "^(.-)\n?$")
      local ok, value = pcall(decode, line)
      lines[#lines + 1] = ok and redact(value, secrets) or redact_text(line, secrets)
    end
    expect.lines = lines
  elseif type(answer.content_type) == "string" and find(answer.content_type, "json", 1, true) then
    put_body(expect, answer.body, secrets)
  elseif answer.body and answer.body ~= "" then
    expect.body = redact_text(answer.body, secrets)
  end
  local messages = array()
  for i, msg in ipairs(rec.messages) do messages[i] = msg end
  expect.messages = messages
  local calls = array()
  for i, call in ipairs(rec.calls) do
    local expected = { method = call.method, url = redact_text(call.url, secrets) }
    put_body(expected, call.body, secrets)
    calls[i] = expected
  end
  expect.calls = calls
  return expect
end

-- What the platform answered to each call, in order (each entry answers one call).
local function platform_of(rec)
  local platform = array()
  for i, call in ipairs(rec.calls) do
    local entry = { method = call.method, url = redact_text(call.url, rec.secrets), once = true }
    if call.answer then
      entry.status = call.answer.status
      local content_type = (call.answer.headers or {})["content-type"]
      if content_type then entry.headers = { ["content-type"] = content_type } end
      put_body(entry, call.answer.body, rec.secrets)
    else
      entry.error = redact_text(call.error or "no answer was recorded", rec.secrets)
    end
    platform[i] = entry
  end
  return platform
end

-- The key the case file's credentials name the channel by: a bundled channel by its key, any
-- other by the path of its script relative to the recording's folder.
local function relative_path(from_dir, to_file)
  local from, to = {}, {}
  for part in gmatch(from_dir, "[^/]+") do from[#from + 1] = part end
  for part in gmatch(to_file, "[^/]+") do to[#to + 1] = part end
  local common = 0
  while common < #from and common < #to - 1 and from[common + 1] == to[common + 1] do
    common = common + 1
  end
  local out = {}
  for _ = common + 1, #from do out[#out + 1] = ".." end
  for i = common + 1, #to do out[#out + 1] = to[i] end
  return concat(out, "/")
end

local function credentials_of(rec)
  local def = rec.def
  local key = def.key or rec.channel.name
  if def.file then
    key = relative_path(rec.config.dir, def.file)
  end
  local params = {}
  for name, value in pairs(type(def.params) == "table" and def.params or {}) do
    params[name] = redact(value, rec.secrets)
  end
  return { [key] = next(params) and params or null }
end

local function case_file(rec)
  local req = rec.request
  local name = format("%s %s%s, recorded %s (request %s)", req.method,
    "/webhooks/" .. rec.channel.name, req.path, os_date("!%Y-%m-%d %H:%M:%S", rec.started),
    tostring(rec.id))
  local file = { credentials = credentials_of(rec), platform = platform_of(rec),
    cases = array({ { name = name, request = req, expect = expectation(rec) } }) }
  if #rec.turns > 0 then
    file.bot = { turns = array(rec.turns) }
  end
  return file
end

-- ---- writing --------------------------------------------------------------------------------------

-- Keys in the order a reader looks for them; others follow, sorted.
local ORDER = {}
for i, k in ipairs({ "credentials", "bot", "platform", "cases", "name", "request", "expect",
  "channel", "method", "url", "path", "query", "headers", "sign", "once", "status", "content_type",
  "json", "body", "lines", "messages", "calls", "turns", "replies", "fail", "error" }) do
  ORDER[k] = i
end

local function key_before(a, b)
  local oa, ob = ORDER[a] or 1000, ORDER[b] or 1000
  if oa ~= ob then return oa < ob end
  return a < b
end

-- JSON, indented: a value that fits on a line stays on one.
local function pretty(v, indent, out)
  local compact = encode(v)
  if type(v) ~= "table" or #compact + #indent <= 96 then
    out[#out + 1] = compact
    return
  end
  local inner = indent .. "  "
  if v[1] ~= nil then
    out[#out + 1] = "[\n"
    for i, item in ipairs(v) do
      out[#out + 1] = inner
      pretty(item, inner, out)
      out[#out + 1] = i < #v and ",\n" or "\n"
    end
    out[#out + 1] = indent .. "]"
    return
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  sort(keys, key_before)
  out[#out + 1] = "{\n"
  for i, k in ipairs(keys) do
    out[#out + 1] = inner .. encode(k) .. ": "
    pretty(v[k], inner, out)
    out[#out + 1] = i < #keys and ",\n" or "\n"
  end
  out[#out + 1] = indent .. "}"
end

local function write_file(rec)
  local out = {}
  pretty(case_file(rec), "", out)
  out[#out + 1] = "\n"
  local safe_id = gsub(tostring(rec.id), "[^%w._-]", "_")
  local path = format("%s/%s-%s-%s.json", rec.config.dir, os_date("!%Y%m%d-%H%M%S", rec.started),
    rec.channel.name, safe_id)
  local partial = path .. ".partial"
  local f, err = io_open(partial, "wb")
  if not f then
    error(err, 0)
  end
  local ok, write_err = f:write(concat(out))
  f:close()
  if ok then
    ok, write_err = os_rename(partial, path)
  end
  if not ok then
    os_remove(partial)
    error(write_err, 0)
  end
  return path
end

-- The request ended with this answer (none when it was streamed or sent earlier): write the
-- case file. Never raises; returns the answer unchanged.
function M.finish(rec, ...)
  if select("#", ...) > 0 and select(1, ...) ~= nil then
    M.answered(rec, ...)
  end
  if rec.answer then
    local ok, result = pcall(write_file, rec)
    if ok then
      log_info("recorded as %s", result)
    else
      log_warn("the request could not be recorded: %s", tostring(result))
    end
  end
  return ...
end

return M
