-- SPDX-License-Identifier: MIT
-- Twilio's request signature, X-Twilio-Signature, as twilio-node's validateRequest checks it:
-- shared by the twilio and twilio_voice channels (docs/channels/twilio.md, "Signatures").
-- verify(req, auth_token) -> true | false, reason; utf8_repaired(s) is exported for TwiML.
local sb = require "switchboard"

local M = {}

-- Every name/value pair of a form-encoded body, repeated names included (req.form keeps only
-- the first value per name, the signature needs them all).
local function form_pairs(body)
  local list = {}
  for pair in body:gmatch("[^&]+") do
    local name, value = pair:match("^([^=]*)=?(.*)$")
    if name ~= "" then
      list[#list + 1] = { sb.urldecode(name), sb.urldecode(value) }
    end
  end
  return list
end

-- The signed parameter string: names sorted, each name followed by each of its distinct values,
-- sorted (Twilio's RequestValidator).
local function signed_params(body)
  local values, names = {}, {}
  for _, p in ipairs(form_pairs(body)) do
    local name, value = p[1], p[2]
    local set = values[name]
    if not set then
      set = {}
      values[name] = set
      names[#names + 1] = name
    end
    set[value] = true
  end
  table.sort(names)
  local out = {}
  for _, name in ipairs(names) do
    local list = {}
    for value in pairs(values[name]) do list[#list + 1] = value end
    table.sort(list)
    for _, value in ipairs(list) do
      out[#out + 1] = name .. value
    end
  end
  return table.concat(out)
end

-- ---- the URLs a signature may cover ---------------------------------------------------------
-- Twilio signs the URL as typed in its console, which may differ from the one received in the
-- port and in how the query is escaped. The candidates are those of twilio-node's
-- validateRequest: the URL as received, with and without the port; then the URL as `new URL()`
-- normalises it, with and without the port, and each of those with the query re-encoded by
-- Node's legacy `querystring` module. docs/channels/twilio.md, "Signatures", lists the cases.

-- scheme://, user info, host, port (":8443", ":" or ""), the rest; nil without scheme://.
local function split_url(url)
  local scheme, authority = url:match("^(%a[%w+.-]*://)([^/?#]*)")
  if not scheme then
    return nil
  end
  local at = authority:match("^.*()@")
  local userinfo = at and authority:sub(1, at) or ""
  local hostport = at and authority:sub(at + 1) or authority
  -- A colon starts the port only after the closing bracket of an IPv6 literal.
  local bracket = hostport:match("^.*()%]")
  local colon = hostport:find(":", (bracket or 0) + 1, true)
  return {
    scheme = scheme, userinfo = userinfo,
    host = colon and hostport:sub(1, colon - 1) or hostport,
    port = colon and hostport:sub(colon) or "",
    rest = url:sub(#scheme + #authority + 1),
  }
end

local function without_port(url)
  local u = split_url(url)
  return u and (u.scheme .. u.userinfo .. u.host .. u.rest) or url
end

local function with_port(url)
  local u = split_url(url)
  if not u or u.port ~= "" then
    return url
  end
  local port = u.scheme:lower() == "https://" and ":443" or ":80"
  return u.scheme .. u.userinfo .. u.host .. port .. u.rest
end

-- The query of an http(s) URL as the URL standard escapes it: controls, space, non-ASCII and
-- " # < > ' percent-encoded, the rest (escapes included) as it is.
local function query_encode(query)
  return (query:gsub("[%c \"#<>'\128-\255]", function(c)
    return ("%%%02X"):format(c:byte())
  end))
end

-- The URL standard's IPv4 number: decimal, 0x hex or 0-prefixed octal; nil when invalid.
local function ipv4_number(part)
  if part == "" then
    return nil
  end
  local digits, base = part, 10
  if part:match("^0[xX]") then
    digits, base = part:sub(3), 16
  elseif part:match("^0.") then
    digits, base = part:sub(2), 8
  end
  local valid = ({ [8] = "^[0-7]*$", [10] = "^%d*$", [16] = "^%x*$" })[base]
  if not digits:match(valid) then
    return nil
  end
  digits = digits:gsub("^0+", "")
  if digits == "" then
    return 0
  end
  -- Longer than any 32-bit value: too large either way (and tonumber would wrap around).
  return #digits > 11 and math.huge or tonumber(digits, base)
end

-- An IPv4 host in any of the spellings the URL standard reads ("127.1", "0x7f.0.0.1"), dotted
-- decimal; nil when invalid.
local function ipv4(parts)
  if #parts > 4 then
    return nil
  end
  local value = 0
  for i, part in ipairs(parts) do
    local n = ipv4_number(part)
    if not n or (i < #parts and n > 255) then
      return nil
    end
    if i < #parts then
      value = value + n * 256 ^ (4 - i)
    elseif n >= 256 ^ (5 - #parts) then
      return nil
    else
      value = value + n
    end
  end
  value = math.tointeger(value)
  return ("%d.%d.%d.%d"):format(value >> 24, (value >> 16) & 255, (value >> 8) & 255,
    value & 255)
end

-- A host as the URL standard serialises it, for ASCII names and IPv4 addresses; nil for the
-- rest (IPv6, international names), whose normal forms are not tried, and for what it refuses.
local function normal_host(host)
  if host == "" or host:find("[^%w%-._~!$&'()*+,;=]") then
    return nil
  end
  host = host:lower()
  local parts = {}
  for label in (host .. "."):gmatch("([^.]*)%.") do
    parts[#parts + 1] = label
  end
  if #parts > 1 and parts[#parts] == "" then
    parts[#parts] = nil
  end
  local last = parts[#parts]
  if last:match("^%d+$") or ipv4_number(last) then
    return ipv4(parts)
  end
  return host
end

-- What `new URL(url).toString()` gives for an http(s) URL a server receives; nil when the URL
-- is outside what this handles (Node would throw, or normalise it further).
local function normalized(url)
  local u = split_url(url)
  if not u or u.userinfo ~= "" or url:find("[#%c]") then
    return nil
  end
  local scheme = u.scheme:lower()
  local default = ({ ["http://"] = 80, ["https://"] = 443 })[scheme]
  local host = normal_host(u.host)
  if not default or not host then
    return nil
  end
  local port = ""
  if u.port ~= ":" and u.port ~= "" then
    local n = u.port:match("^:(%d+)$") and tonumber(u.port:sub(2))
    if not n or n > 65535 then
      return nil
    end
    port = n == default and "" or (":" .. n)
  end
  -- The path is the webhook's, which the route matched: `new URL()` would keep it as it is.
  local path, query = u.rest:match("^([^?]*)(.*)$")
  return scheme .. host .. port .. path .. query_encode(query)
end

-- Bytes as Node decodes them into a string: each invalid UTF-8 sequence becomes U+FFFD (the
-- Encoding standard's decoder, which Node's Buffer.toString follows).
local REPLACEMENT = "\239\191\189"

local function utf8_repaired(s)
  if utf8.len(s) then
    return s
  end
  local out, i, n = {}, 1, #s
  while i <= n do
    local b = s:byte(i)
    local need, lower, upper = 0, 0x80, 0xBF
    if b >= 0xC2 and b <= 0xDF then
      need = 1
    elseif b >= 0xE0 and b <= 0xEF then
      need = 2
      lower = b == 0xE0 and 0xA0 or 0x80
      upper = b == 0xED and 0x9F or 0xBF
    elseif b >= 0xF0 and b <= 0xF4 then
      need = 3
      lower = b == 0xF0 and 0x90 or 0x80
      upper = b == 0xF4 and 0x8F or 0xBF
    elseif b >= 0x80 then
      need = -1
    end
    if need == 0 then
      out[#out + 1] = string.char(b)
      i = i + 1
    elseif need < 0 then
      out[#out + 1] = REPLACEMENT
      i = i + 1
    else
      local j = i + 1
      while j <= i + need do
        local c = s:byte(j)
        if not c or c < lower or c > upper then
          break
        end
        lower, upper = 0x80, 0xBF
        j = j + 1
      end
      out[#out + 1] = j > i + need and s:sub(i, j - 1) or REPLACEMENT
      i = j
    end
  end
  return table.concat(out)
end

-- Node's querystring.escape: every byte but A-Z a-z 0-9 - _ . ! ~ * ' ( ).
local function qs_escape(s)
  return (s:gsub("[^%w%-_.!~*'()]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- An "array index" key (0 to 2^32 - 2, no leading zero): JavaScript objects list these first.
local function index_key(k)
  return (k == "0" or k:match("^[1-9]%d*$")) and #k <= 10 and tonumber(k) <= 4294967294
end

local MAX_QS_PAIRS = 1000      -- querystring.parse's maxKeys: pairs past it are dropped

-- querystring.stringify(querystring.parse(query)): names in the order of a JavaScript object,
-- each name's values together.
local function legacy_query(query)
  local names, values, count = {}, {}, 0
  for pair in (query .. "&"):gmatch("([^&]*)&") do
    count = count + 1
    if count > MAX_QS_PAIRS then
      break
    end
    if pair ~= "" then
      local name, value = pair:match("^([^=]*)=?(.*)$")
      name, value = utf8_repaired(sb.urldecode(name)), utf8_repaired(sb.urldecode(value))
      if not values[name] then
        names[#names + 1] = name
        values[name] = {}
      end
      table.insert(values[name], value)
    end
  end
  local indexes, others = {}, {}
  for _, name in ipairs(names) do
    table.insert(index_key(name) and indexes or others, name)
  end
  table.sort(indexes, function(x, y) return tonumber(x) < tonumber(y) end)
  local out = {}
  for _, list in ipairs({ indexes, others }) do
    for _, name in ipairs(list) do
      for _, value in ipairs(values[name]) do
        out[#out + 1] = qs_escape(name) .. "=" .. qs_escape(value)
      end
    end
  end
  return table.concat(out, "&")
end

local function with_legacy_query(url)
  local q = url:find("?", 1, true)
  if not q or q == #url then
    return url
  end
  return url:sub(1, q) .. legacy_query(url:sub(q + 1))
end

-- Every URL the signature is checked against, without repeats.
local function url_variants(url)
  local list, seen = {}, {}
  local function add(u)
    if not seen[u] then
      seen[u] = true
      list[#list + 1] = u
    end
  end
  add(without_port(url))
  add(with_port(url))
  local n = normalized(url)
  if n then
    add(without_port(n))
    add(with_port(n))
    add(with_legacy_query(without_port(n)))
    add(with_legacy_query(with_port(n)))
  end
  return list
end

local function is_form(req)
  local content_type = req.headers["content-type"] or ""
  return content_type:lower():find("application/x-www-form-urlencoded", 1, true) ~= nil
end

-- Whether req carries Twilio's signature for auth_token: true, or false and why.
-- X-Twilio-Signature = base64(HMAC-SHA1(auth token, URL .. sorted POST parameters)). A JSON
-- body is signed through the URL's bodySHA256 query parameter instead.
function M.verify(req, auth_token)
  local signature = req.headers["x-twilio-signature"]
  if signature == nil or signature == "" then
    return false, "missing X-Twilio-Signature header"
  end
  local params = ""
  -- As twilio-node: a URL that names bodySHA256 anywhere signs the body through that parameter.
  if req.url:find("bodySHA256", 1, true) then
    local body_hash = req.query.bodySHA256 or ""
    if not sb.secure_compare(sb.hex(sb.digest("sha256", req.body)), body_hash) then
      return false, "the body does not match the bodySHA256 query parameter"
    end
  elseif is_form(req) then
    params = signed_params(req.body)
  end
  for _, url in ipairs(url_variants(req.url)) do
    local expected = sb.base64(sb.hmac("sha1", auth_token, url .. params))
    if sb.secure_compare(expected, signature) then
      return true
    end
  end
  return false, ("X-Twilio-Signature does not match %s (check `auth_token`; behind a proxy, "
    .. "pass X-Forwarded-Proto and X-Forwarded-Host so the URL is the one Twilio calls)")
    :format(req.url)
end

M.utf8_repaired = utf8_repaired

return M
