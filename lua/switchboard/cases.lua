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

local ARRAY_MT = getmetatable(sb.json.array())

-- The JSON kind of a value: a marked array or a table with t[1] is an array, any other table
-- an object (an empty Lua table is encoded as {}).
local function kind(v)
  if v == null then return "null" end
  local t = type(v)
  if t == "table" then
    return (getmetatable(v) == ARRAY_MT or v[1] ~= nil) and "array" or "object"
  end
  return t
end

local compare

-- Values the `$unique` matcher has seen in this file.
local seen_unique = {}

local function add(out, path, fmt, ...)
  out[#out + 1] = path .. ": " .. format(fmt, ...)
end

-- The whole string matches the Lua pattern (anchored at both ends).
local function whole_match(s, pattern, path, out)
  local ok, found = pcall(string.find, s, "^" .. pattern .. "$")
  if not ok then
    add(out, path, "bad pattern %s: %s", show(pattern), tostring(found))
    return nil -- reported
  end
  return found ~= nil
end

local TYPES = { string = true, number = true, integer = true, object = true, array = true,
  boolean = true, null = true }

-- Matchers: keys starting with `$` in an expected object (docs/testing.md#matchers). Each gets
-- the matcher's argument, the actual value, the path, the mode and the list of differences.
local MATCHERS = {}

function MATCHERS.any(_, actual, path, _, out)
  if actual == nil then add(out, path, "expected any value, got nil") end
end

function MATCHERS.absent(_, actual, path, _, out)
  if actual ~= nil then add(out, path, "expected no value, got %s", show(actual)) end
end

function MATCHERS.type(name, actual, path, _, out)
  if name == null then name = "null" end -- `$type: null` unquoted
  if not TYPES[name] then
    add(out, path, "unknown $type %s", show(name))
    return
  end
  local ok = kind(actual) == name or (name == "integer" and math.type(actual) == "integer")
  if not ok then add(out, path, "expected a value of type %s, got %s", name, show(actual)) end
end

function MATCHERS.pattern(pattern, actual, path, _, out)
  if type(actual) ~= "string" then
    add(out, path, "expected a string matching %s, got %s", show(pattern), show(actual))
  elseif whole_match(actual, pattern, path, out) == false then
    add(out, path, "%s does not match the pattern %s", show(actual), show(pattern))
  end
end

function MATCHERS.length(n, actual, path, _, out)
  local k = kind(actual)
  local len = (k == "string" or k == "array") and #actual or nil
  if len ~= n then
    add(out, path, "expected a length of %s, got %s", show(n),
      len and tostring(len) or show(actual))
  end
end

function MATCHERS.json(expected, actual, path, _, out)
  if type(actual) ~= "string" then
    add(out, path, "expected a JSON text, got %s", show(actual))
    return
  end
  local ok, value = pcall(decode, actual)
  if not ok then
    add(out, path, "expected a JSON text, got %s", show(actual))
    return
  end
  compare(expected, value, path .. "<json>", true, out)
end

function MATCHERS.exact(expected, actual, path, _, out)
  compare(expected, actual, path, true, out)
end

local function fields(expected, actual, path, exact, out)
  if kind(actual) ~= "object" then
    add(out, path, "expected an object, got %s", show(actual))
    return false
  end
  for k, v in pairs(expected) do
    compare(v, actual[k], path .. "." .. tostring(k), exact, out)
  end
  return true
end

function MATCHERS.contains(expected, actual, path, exact, out)
  fields(expected, actual, path, exact, out)
end

function MATCHERS.keys(names, actual, path, _, out)
  if kind(actual) ~= "object" then
    add(out, path, "expected an object, got %s", show(actual))
    return
  end
  local want, missing, extra = {}, {}, {}
  for _, name in ipairs(names) do want[name] = true end
  for _, name in ipairs(names) do
    if actual[name] == nil then missing[#missing + 1] = name end
  end
  for k in pairs(actual) do
    if not want[k] then extra[#extra + 1] = tostring(k) end
  end
  table.sort(extra)
  if #missing > 0 or #extra > 0 then
    local function list(t) return #t > 0 and table.concat(t, ", ") or "none" end
    add(out, path, "expected the keys %s; missing: %s; not expected: %s", list(names),
      list(missing), list(extra))
  end
end

function MATCHERS.key_pattern(pattern, actual, path, _, out)
  if kind(actual) ~= "object" then
    add(out, path, "expected an object, got %s", show(actual))
    return
  end
  local bad = {}
  for k in pairs(actual) do
    local ok = type(k) == "string" and whole_match(k, pattern, path, out)
    if ok == nil then return end -- a bad pattern, reported
    if not ok then bad[#bad + 1] = tostring(k) end
  end
  table.sort(bad)
  if #bad > 0 then
    add(out, path, "keys %s do not match the pattern %s", table.concat(bad, ", "), show(pattern))
  end
end

function MATCHERS.unique(_, actual, path, _, out)
  local key = kind(actual) .. ":" .. (type(actual) == "table" and show(actual) or tostring(actual))
  if seen_unique[key] then
    add(out, path, "%s was seen before in this file", show(actual))
  end
  seen_unique[key] = true
end

-- Differences between what was expected and what came: `exact` compares whole values, else an
-- object only needs the keys the expectation names (messages, calls, headers). Arrays always
-- need the same length. An object whose keys start with `$` is a matcher (or mixes matchers
-- and fields: the fields are then checked as `$contains` does, and every matcher must hold).
function compare(expected, actual, path, exact, out)
  if type(expected) == "table" and expected ~= null then
    local plain, matched = nil, false
    if kind(expected) == "object" then
      for k, v in pairs(expected) do
        if type(k) == "string" and k:sub(1, 1) == "$" then
          local matcher = MATCHERS[k:sub(2)]
          if not matcher then
            add(out, path, "unknown matcher %s", k)
          else
            matcher(v, actual, path, exact, out)
          end
          matched = true
        else
          plain = plain or {}
          plain[k] = v
        end
      end
      if matched then
        if plain then fields(plain, actual, path, exact, out) end
        return
      end
    end
    local want = kind(expected)
    if kind(actual) ~= want then
      add(out, path, "expected %s, got %s", show(expected), show(actual))
      return
    end
    if want == "array" then
      if #expected ~= #actual then
        add(out, path, "expected %d items, got %d: %s", #expected, #actual, show(actual))
        return
      end
      for i = 1, #expected do
        compare(expected[i], actual[i], path .. "." .. i, exact, out)
      end
      return
    end
    fields(expected, actual, path, exact, out)
    if exact then
      for k, v in pairs(actual) do
        if expected[k] == nil then
          add(out, path .. "." .. tostring(k), "not expected, got %s", show(v))
        end
      end
    end
    return
  end
  -- Numbers compare by value (1 and 1.0 alike); everything else exactly.
  if expected ~= actual then
    add(out, path, "expected %s, got %s", show(expected), show(actual))
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
-- Twilio signs voice webhooks as it signs messaging ones.
SIGNERS.twilio_voice = SIGNERS.twilio

-- hex(HMAC-SHA1(secret, body)) in X-Spark-Signature.
function SIGNERS.webexteams(params, req)
  req.headers["x-spark-signature"] = hex(hmac("sha1", params.secret or "", req.body or ""))
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
    error(format("sign: no signing scheme %s (slack, facebook, twilio, twilio_voice, telegram "
      .. "or webexteams)",
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

-- ---- what a case checks besides values --------------------------------------------------------

-- A Content-Type without parameters compares the media type only, in any case
-- ("application/json" matches "application/json; charset=utf-8"); else the whole value.
local function check_content_type(expected, actual, diffs)
  if type(expected) == "string" and not expected:find(";", 1, true) and type(actual) == "string"
      and expected:lower() == (actual:match("^%s*([^;]-)%s*;") or ""):lower() then
    return
  end
  if type(expected) == "string" and type(actual) == "string"
      and expected:lower() == actual:lower() then
    return
  end
  compare(expected, actual, "content_type", true, diffs)
end

-- A streamed line is one JSON value written without white space between its tokens, and a
-- newline.
local function is_compact_line(line)
  if line:sub(-1) ~= "\n" then return false end
  local in_string, i, n = false, 1, #line - 1
  while i <= n do
    local c = line:byte(i)
    if in_string then
      if c == 92 then i = i + 1 elseif c == 34 then in_string = false end
    elseif c == 34 then
      in_string = true
    elseif c == 32 or c == 9 or c == 10 or c == 13 then
      return false
    end
    i = i + 1
  end
  return true
end

-- `log:` each Lua pattern must be found in a line logged while the case ran.
local function check_log(patterns, lines, diffs)
  if kind(patterns) ~= "array" then patterns = { patterns } end
  for i, pattern in ipairs(patterns) do
    local found = false
    for _, line in ipairs(lines) do
      local ok, at = pcall(string.find, line, tostring(pattern))
      if not ok then
        add(diffs, "log." .. i, "bad pattern %s: %s", show(pattern), tostring(at))
        found = true
        break
      end
      if at then found = true break end
    end
    if not found then
      local text = #lines == 0 and "nothing was logged" or
        (#lines .. " lines logged: " .. table.concat(lines, " | "))
      add(diffs, "log." .. i, "no line matches %s; %s", show(pattern),
        #text > 600 and text:sub(1, 600) .. "..." or text)
    end
  end
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
  -- A query in the path is sent as written (repeated names, percent-escapes); the channel's
  -- req.query has the first value of each name, as live.
  local path, raw = (req.path or "/webhook"):match("^([^?]*)%??(.*)$")
  local query, texts = {}, {}
  if raw ~= "" then
    texts[1] = raw
    for pair in raw:gmatch("[^&]+") do
      local name, value = pair:match("^([^=]*)=?(.*)$")
      name = sb.urldecode(name)
      if query[name] == nil then query[name] = sb.urldecode(value) end
    end
  end
  local named = {}
  for k, v in pairs(req.query or {}) do named[k] = tostring(v) end
  if next(named) then
    texts[#texts + 1] = urlencode(named)
    for k, v in pairs(named) do
      if query[k] == nil then query[k] = v end
    end
  end
  return {
    channel = req.channel or case.channel, method = (req.method or "POST"):upper(),
    path = path, query = query,
    query_text = #texts > 0 and table.concat(texts, "&") or nil, headers = headers,
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
  local calls = sb.json.array() -- runner lists are arrays, so `[]` matches an empty one
  take_messages()
  local req = request_of(case, platform_for(case.platform or defaults.platform, calls))
  if req.channel == nil then
    local only, count = nil, 0
    for name in pairs(defaults.channels) do only, count = name, count + 1 end
    if count == 1 then req.channel = only end
  end
  sign(case, req, defaults.channels)
  local result = request(req)
  local messages = sb.json.array(take_messages())
  local expect = case.expect or {}
  local diffs = {}
  if result.error then
    diffs[#diffs + 1] = "the request failed: " .. tostring(result.error):match("^[^\n]*")
  end
  if expect.status ~= nil then compare(expect.status, result.status, "status", true, diffs) end
  if expect.content_type ~= nil then
    check_content_type(expect.content_type, result.content_type, diffs)
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
    local got = sb.json.array()
    for i, line in ipairs(result.lines or {}) do
      local ok, value = pcall(decode, line)
      got[i] = ok and value or line
      if not ok or not is_compact_line(line) then
        add(diffs, "lines." .. i, "not one compact JSON value and a newline: %s", show(line))
      end
    end
    compare(expect.lines, got, "lines", true, diffs)
  end
  if expect.log ~= nil then check_log(expect.log, result.log or {}, diffs) end
  if expect.messages ~= nil then compare(expect.messages, messages, "messages", false, diffs) end
  if expect.calls ~= nil then compare(expect.calls, calls, "calls", false, diffs) end
  return diffs
end

-- Run every case of a case file (channels: name -> {key, params}); prints a line per case
-- unless quiet. With `repeat: N` the cases run N times in order, in the same Lua state; each pass
-- after the first starts with store_reset() (an empty sb.store, as the first had). Returns
-- passed, failed, and the first failure as one line (or nil).
function M.run_file(file_case, path, request, channels, quiet, store_reset)
  local passed, failed, first_failure = 0, 0, nil
  local write = quiet and function() end or write
  local defaults = { platform = file_case.platform, channels = channels or {} }
  local passes = file_case["repeat"] or 1
  if math.type(passes) ~= "integer" or passes < 1 then
    error("repeat: wants a whole number of passes, 1 or more", 0)
  end
  seen_unique = {}
  local function run_case(case, name)
    case.channel = case.channel or file_case.channel
    local ok, diffs = pcall(check_case, case, request, defaults)
    if not ok then
      diffs = { "the case could not run: " .. tostring(diffs):match("^[^\n]*") }
    end
    if #diffs == 0 then
      passed = passed + 1
      write(format("ok    %s: %s\n", path, name))
      return
    end
    failed = failed + 1
    first_failure = first_failure or format("case '%s' failed: %s", name,
      table.concat(diffs, "; "))
    write(format("FAIL  %s: %s\n", path, name))
    for _, d in ipairs(diffs) do
      write("        ", d, "\n")
    end
  end
  for pass = 1, passes do
    if pass > 1 and store_reset then
      store_reset()
    end
    for i, case in ipairs(file_case.cases or {}) do
      local name = case.name or ("case " .. i)
      run_case(case, passes > 1 and format("%s (pass %d)", name, pass) or name)
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
