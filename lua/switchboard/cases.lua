-- SPDX-License-Identifier: MIT
-- The case runner of `switchboard test` (docs/testing.md): for each case of a case file, the
-- request goes through the real channel and pipeline (request(), in offline.c), the platform's
-- answers come from the case's `platform:` list, and what came out is compared with `expect:`.
-- One line per case, the differences under a failing one.
local sb = require "switchboard"
local take_messages = require("switchboard.case_log").take

local type, pairs, ipairs, tostring, format = type, pairs, ipairs, tostring, string.format
local encode, decode, null = sb.json.encode, sb.json.decode, sb.json.null
local urlencode = sb.urlencode
local write = io.write

local M = {}

-- ---- comparing --------------------------------------------------------------------------------

local function show(v)
  if v == null then
    return "null"
  end
  if type(v) == "table" then
    local ok, text = pcall(encode, v)
    return ok and text or tostring(v)
  end
  if type(v) == "string" then
    return format("%q", v)
  end
  return tostring(v)
end

local function is_array(t)
  return type(t) == "table" and (t[1] ~= nil or next(t) == nil)
end

-- Differences between what was expected and what came: `exact` compares whole values, else a
-- table only needs the keys the expectation names (messages, calls, headers). Arrays always
-- need the same length.
local function compare(expected, actual, path, exact, out)
  if type(expected) == "table" and expected ~= null then
    if type(actual) ~= "table" then
      out[#out + 1] = format("%s: expected %s, got %s", path, show(expected), show(actual))
      return
    end
    if is_array(expected) and #expected ~= #actual and (exact or #expected > 0) then
      out[#out + 1] = format("%s: expected %d items, got %d: %s", path, #expected, #actual,
        show(actual))
      return
    end
    for k, v in pairs(expected) do
      compare(v, actual[k], path .. "." .. tostring(k), exact, out)
    end
    if exact then
      for k, v in pairs(actual) do
        if expected[k] == nil then
          out[#out + 1] = format("%s.%s: not expected, got %s", path, tostring(k), show(v))
        end
      end
    end
    return
  end
  -- Numbers compare by value (1 and 1.0 alike); everything else exactly.
  if expected ~= actual and not (type(expected) == "number" and type(actual) == "number"
      and expected == actual) then
    out[#out + 1] = format("%s: expected %s, got %s", path, show(expected), show(actual))
  end
end

-- ---- the platform ---------------------------------------------------------------------------

-- The answer for an outbound call: the first entry of `platform` whose method and URL match
-- (`url` exactly, or `url_pattern` as a Lua pattern) and that is not used up (an entry with
-- `once: true` answers one call of the case); every call is recorded.
local function platform_for(entries, calls)
  local used = {}
  return function(call)
    local recorded = { method = call.method, url = call.url, headers = call.headers,
      body = call.body }
    if call.body ~= "" then
      local ok, value = pcall(decode, call.body)
      if ok then recorded.json = value end
    end
    calls[#calls + 1] = recorded
    for _, entry in ipairs(entries or {}) do
      local method_ok = entry.method == nil or entry.method:upper() == call.method
      local url_ok = (entry.url and entry.url == call.url)
        or (entry.url_pattern and call.url:match(entry.url_pattern))
        or (entry.url == nil and entry.url_pattern == nil)
      if method_ok and url_ok and not used[entry] then
        if entry.once == true then used[entry] = true end
        if entry.error then
          return entry.error -- no answer: the script gets nil and this message
        end
        local body = entry.body
        local headers = {}
        for k, v in pairs(entry.headers or {}) do headers[k:lower()] = tostring(v) end
        if entry.json ~= nil then
          body = encode(entry.json)
          headers["content-type"] = headers["content-type"] or "application/json"
        end
        return { status = entry.status or 200, body = body or "", headers = headers }
      end
    end
    return format("no answer in the case for %s %s", call.method, call.url)
  end
end

-- ---- signing ---------------------------------------------------------------------------------
-- `sign: true` (the scheme of the channel's key) or `sign: <scheme>` signs the request the way
-- the platform does, with the secret of the channel's own parameters, so a case needs no
-- precomputed signature.

local hmac, hex, base64 = sb.hmac, sb.hex, sb.base64
local SIGNERS = {}

function SIGNERS.slack(params, req)
  local ts = tostring(math.floor(sb.now()))
  req.headers["x-slack-request-timestamp"] = ts
  req.headers["x-slack-signature"] =
    "v0=" .. hex(hmac("sha256", params.slack_signing_secret or "", "v0:" .. ts .. ":" .. req.body))
end

function SIGNERS.facebook(params, req)
  req.headers["x-hub-signature-256"] = "sha256=" .. hex(hmac("sha256", params.secret or "", req.body))
end

-- base64(HMAC-SHA1(auth token, URL .. the form's names and values, sorted by name)).
function SIGNERS.twilio(params, req, form)
  local url = "https://" .. (req.headers.host or "localhost") .. "/webhooks/" .. req.channel ..
    req.path .. (req.query_text and ("?" .. req.query_text) or "")
  local names = {}
  for name in pairs(form or {}) do names[#names + 1] = name end
  table.sort(names)
  local text = { url }
  for _, name in ipairs(names) do text[#text + 1] = name .. tostring(form[name]) end
  req.headers["x-twilio-signature"] = base64(hmac("sha1", params.auth_token or "",
    table.concat(text)))
end

function SIGNERS.telegram(params, req)
  req.headers["x-telegram-bot-api-secret-token"] = params.secret_token
end

local function sign(case, req, channels)
  local sign_as = (case.request or {}).sign
  if not sign_as then
    return
  end
  local channel = channels[req.channel]
  if not channel then
    error(format("sign: no channel named %s in the case's credentials", show(req.channel)), 0)
  end
  local scheme = sign_as == true and channel.key or sign_as
  local signer = SIGNERS[scheme]
  if not signer then
    error(format("sign: no signing scheme %s (slack, facebook, twilio or telegram)",
      show(scheme)), 0)
  end
  local form = (case.request or {}).form
  if form == nil and (req.headers["content-type"] or ""):find("x-www-form-urlencoded", 1, true) then
    -- A form given as text (switchboard try --data 'a=1&b=2'): its pairs are what is signed.
    form = {}
    for pair in req.body:gmatch("[^&]+") do
      local name, value = pair:match("^([^=]*)=?(.*)$")
      name = sb.urldecode(name)
      if form[name] == nil then form[name] = sb.urldecode(value) end
    end
  end
  signer(channel.params or {}, req, form)
end

-- ---- one case -------------------------------------------------------------------------------

local function request_of(case, platform)
  local req = case.request or {}
  local headers = {}
  for k, v in pairs(req.headers or {}) do headers[k:lower()] = tostring(v) end
  local body = req.body
  if req.json ~= nil then
    body = encode(req.json)
    headers["content-type"] = headers["content-type"] or "application/json"
  elseif req.form ~= nil then
    body = urlencode(req.form)
    headers["content-type"] = headers["content-type"] or "application/x-www-form-urlencoded"
  end
  local query = {}
  for k, v in pairs(req.query or {}) do query[k] = tostring(v) end
  return {
    channel = req.channel or case.channel, method = (req.method or "POST"):upper(),
    path = req.path or "/webhook", query = query,
    query_text = next(query) and urlencode(query) or nil, headers = headers,
    body = body or "", platform = platform,
  }
end

local function answer_body(result)
  local body = result.body
  if result.lines then
    body = table.concat(result.lines)
  end
  return body
end

local function check_case(case, request, defaults)
  local calls = {}
  take_messages()
  local req = request_of(case, platform_for(case.platform or defaults.platform, calls))
  if req.channel == nil then
    local only, count = nil, 0
    for name in pairs(defaults.channels) do only, count = name, count + 1 end
    if count == 1 then req.channel = only end
  end
  sign(case, req, defaults.channels)
  local result = request(req)
  local messages = take_messages()
  local expect = case.expect or {}
  local diffs = {}
  if result.error then
    diffs[#diffs + 1] = "the request failed: " .. tostring(result.error):match("^[^\n]*")
  end
  if expect.status ~= nil then compare(expect.status, result.status, "status", true, diffs) end
  if expect.content_type ~= nil then
    compare(expect.content_type, result.content_type, "content_type", true, diffs)
  end
  if expect.headers ~= nil then
    local got = {}
    for k, v in pairs(result.headers or {}) do got[k:lower()] = v end
    local want = {}
    for k, v in pairs(expect.headers) do want[k:lower()] = v end
    compare(want, got, "headers", false, diffs)
  end
  local body = answer_body(result)
  if expect.body ~= nil then compare(expect.body, body, "body", true, diffs) end
  if expect.json ~= nil then
    local ok, value = pcall(decode, body or "")
    if not ok then
      diffs[#diffs + 1] = format("json: the answer is not JSON: %s", show(body))
    else
      compare(expect.json, value, "json", true, diffs)
    end
  end
  if expect.lines ~= nil then
    local got = {}
    for i, line in ipairs(result.lines or {}) do
      local ok, value = pcall(decode, line)
      got[i] = ok and value or line
    end
    compare(expect.lines, got, "lines", true, diffs)
  end
  if expect.messages ~= nil then compare(expect.messages, messages, "messages", false, diffs) end
  if expect.calls ~= nil then compare(expect.calls, calls, "calls", false, diffs) end
  return diffs
end

-- Run every case of a case file (channels: name -> {key, params}); prints a line per case
-- unless quiet. Returns passed, failed, and the first failure as one line (or nil).
function M.run_file(file_case, path, request, channels, quiet)
  local passed, failed, first_failure = 0, 0, nil
  local write = quiet and function() end or write
  local defaults = { platform = file_case.platform, channels = channels or {} }
  for i, case in ipairs(file_case.cases or {}) do
    case.channel = case.channel or file_case.channel
    local name = case.name or ("case " .. i)
    local ok, diffs = pcall(check_case, case, request, defaults)
    if not ok then
      diffs = { "the case could not run: " .. tostring(diffs):match("^[^\n]*") }
    end
    if #diffs == 0 then
      passed = passed + 1
      write(format("ok    %s: %s\n", path, name))
    else
      failed = failed + 1
      first_failure = first_failure or format("case '%s' failed: %s", name,
        table.concat(diffs, "; "))
      write(format("FAIL  %s: %s\n", path, name))
      for _, d in ipairs(diffs) do
        write("        ", d, "\n")
      end
    end
  end
  return passed, failed, first_failure
end

-- ---- switchboard try --------------------------------------------------------------------------

local function print_json(prefix, v)
  write(prefix, type(v) == "string" and v or show(v), "\n")
end

-- One request from the command line (offline.c); prints the UserMessages the bot got, the
-- outbound calls (each answered 200 {"ok":true}) and the answer. Returns the exit status.
function M.try(spec, request, channels)
  local headers, query = {}, {}
  for _, line in ipairs(spec.header_lines) do
    local name, value = line:match("^%s*([^:]+):%s*(.-)%s*$")
    if not name then
      write("switchboard: -H wants 'Name: value', not ", show(line), "\n")
      return 2
    end
    headers[name] = value
  end
  for _, pair in ipairs(spec.query_pairs) do
    local name, value = pair:match("^([^=]+)=(.*)$")
    query[name or pair] = value or ""
  end
  -- The channel by name or by its credentials key.
  local name = spec.channel
  if not channels[name] then
    for n, c in pairs(channels) do
      if c.key == name then name = n end
    end
  end
  if not channels[name] then
    local names = {}
    for n in pairs(channels) do names[#names + 1] = n end
    table.sort(names)
    write(format("switchboard: no channel %s in the credentials (channels: %s)\n", show(name),
      table.concat(names, ", ")))
    return 2
  end
  local case = { request = { channel = name, method = spec.method, path = spec.path,
    headers = headers, query = query, body = spec.body, sign = spec.sign or nil } }
  local calls = {}
  take_messages()
  local req = request_of(case, platform_for({ { json = { ok = true } } }, calls))
  sign(case, req, channels)
  local result = request(req)
  local messages = take_messages()

  write(format("%s /webhooks/%s%s\n", req.method, req.channel, req.path))
  write(format("\nUserMessages the bot got (%d):\n", #messages))
  for i, msg in ipairs(messages) do
    msg.headers = nil -- the request's headers, shown above
    print_json(format("  %d. ", i), msg)
  end
  write(format("\nOutbound calls (%d, each answered 200 {\"ok\":true}):\n", #calls))
  for i, call in ipairs(calls) do
    write(format("  %d. %s %s\n", i, call.method, call.url))
    if call.body ~= "" then
      print_json("     ", call.json ~= nil and call.json or call.body)
    end
  end
  write(format("\nAnswer: %s %s\n", tostring(result.status), result.content_type or ""))
  local names = {}
  for k in pairs(result.headers or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    write(format("  %s: %s\n", k, tostring(result.headers[k])))
  end
  local body = answer_body(result)
  if body and body ~= "" then
    write("  ", (body:gsub("\n", "\n  ")), "\n")
  end
  if result.error then
    write("  (", tostring(result.error):match("^[^\n]*"), ")\n")
  end
  return 0
end

return M
