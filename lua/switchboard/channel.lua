-- SPDX-License-Identifier: MIT
-- Helpers for channel scripts: what the bundled platform channels (slack, telegram, facebook,
-- twilio, callback) need alike. Parameter readers that raise one error naming the channel and the
-- key (driven by the channel's `parameters` declaration when it has one), value tests, text
-- splitting and HTTP calls to a platform's API. docs/lua-api.md, "Helpers for channels", is the
-- reference.
--
--   local util = require "switchboard.channel"
--   channel.parameters = { token = { type = "string", required = true, secret = true } }
--   local v = util.params(config, channel):values()      -- v.token
--   -- or key by key: util.params(config, "acme"):string("token", { required = true })
local sb = require "switchboard"
local output = require "switchboard.output"

local json = sb.json
local M = {}

---------------------------------------------------------------------------------------------------
-- Values.

-- Neither nil nor JSON null.
function M.non_null(v)
  return v ~= nil and v ~= json.null
end

function M.nonempty_string(v)
  return type(v) == "string" and v ~= ""
end

-- A table that is not a JSON array. An empty table could be either (sb.json marks the arrays it
-- decodes, but a table from elsewhere carries no mark): with `raw`, the text the value was decoded
-- from, an empty table is an object only when the text is one.
function M.is_object(v, raw)
  if type(v) ~= "table" or v[1] ~= nil then
    return false
  end
  if raw ~= nil and next(v) == nil then
    return raw:match("^%s*{") ~= nil
  end
  return true
end

-- A table as its JSON text, anything else through tostring (the host's own, from output.lua).
M.as_text = output.as_text

-- An id as text: a whole number without ".0" (a float such as 123.0, from arithmetic or from a
-- decoder that reads every number as a float), another number through tostring, a non-empty
-- string as it is; nil otherwise.
function M.id_text(v)
  if type(v) == "number" then
    if v == math.floor(v) and v > -2 ^ 63 and v < 2 ^ 63 then
      return ("%d"):format(v)
    end
    return tostring(v)
  end
  if M.nonempty_string(v) then
    return v
  end
  return nil
end

-- A shallow copy (the host's own, from output.lua).
M.copy = output.copy

-- The parts of a text to send as separate messages, as Rasa's output channels do: the text
-- (a table as JSON) stripped and split on blank lines ("\n\n"); parts that are only white space
-- are left out (platforms refuse empty messages). nil and JSON null give no part.
local strip, as_text, null = sb.strip, output.as_text, json.null
local find, sub = string.find, string.sub

function M.text_parts(text)
  if text == nil or text == null then
    return {}
  end
  if type(text) ~= "string" then
    text = as_text(text)
  end
  text = strip(text)
  if not find(text, "\n\n", 1, true) then -- one part (the common case), already stripped
    return text ~= "" and { text } or {}
  end
  local parts = {}
  local start = 1
  while true do
    local i = find(text, "\n\n", start, true)
    local part = sub(text, start, (i or 0) - 1)
    if strip(part) ~= "" then
      parts[#parts + 1] = part
    end
    if not i then
      return parts
    end
    start = i + 2
  end
end

---------------------------------------------------------------------------------------------------
-- Parameters: the channel's map from credentials.yml, read key by key, or all at once from the
-- channel's declaration (channel.parameters = { key = { type = "string", ... }, ... }).

local Params = {}
Params.__index = Params

-- "a", "a or b", "a, b or c" (with "and" for `word`).
local function one_of(list, word)
  if #list <= 1 then
    return tostring(list[1] or "")
  end
  local head = {}
  for i = 1, #list - 1 do head[i] = tostring(list[i]) end
  return table.concat(head, ", ") .. " " .. word .. " " .. tostring(list[#list])
end

-- util.params(config, channel_or_name [, opts]): `channel_or_name` is the channel table (its
-- `name` names the errors and its `parameters` declares the keys) or just the name.
function M.params(config, channel, opts)
  local name, declared = channel, nil
  if type(channel) == "table" then
    name, declared = channel.name, channel.parameters
  end
  if type(name) ~= "string" or name == "" then
    error("switchboard.channel.params: the channel's name must be a string", 2)
  end
  if declared ~= nil and type(declared) ~= "table" then
    error("switchboard.channel.params: channel.parameters must be a table", 2)
  end
  opts = opts or {}
  if type(config) ~= "table" then
    if opts.needs then
      error(("the %s channel needs parameters: %s"):format(name, one_of(opts.needs, "and")), 0)
    end
    config = {}
  end
  return setmetatable({ config = config, name = name, declared = declared,
    number_as_text = opts.number_as_text == true }, Params)
end

-- The declaration of `key` ({} without a declaration); a key the channel did not declare is a
-- mistake in the script, raised at the caller of the reader.
function Params:spec(key)
  local declared = self.declared
  if declared == nil then
    return {}
  end
  local spec = declared[key]
  if type(spec) ~= "table" then
    error(("%s: `%s` is read but not declared in channel.parameters"):format(self.name, key), 0)
  end
  return spec
end

-- Raises "<channel>: `<key>` <message>", the form of every error below but `required`.
function Params:fail(key, fmt, ...)
  error(("%s: `%s` %s"):format(self.name, key, fmt:format(...)), 0)
end

-- A wrong value as an error shows it: never a secret one.
local function shown(self, key, v)
  if self:spec(key).secret then
    return "the value given (secret, not shown)"
  end
  return type(v) == "table" and "a table" or tostring(v)
end

local function missing(self, key, spec, opts)
  local hint = opts.hint or spec.hint
  error(("the %s channel needs the `%s` parameter%s"):format(self.name, key,
    hint and (" (" .. hint .. ")") or ""), 0)
end

-- A value given for `key` as a string, by the rules of Params:string; `what` names what the
-- key holds ("a string", "a list of strings") in the errors.
local function text_of(self, key, v, what)
  if type(v) == "number" and (self.number_as_text or self:spec(key).number_as_text) then
    return M.id_text(v)
  elseif type(v) == "number" or type(v) == "boolean" then
    -- YAML reads +14155550100 as a number and yes as true: the text as written is lost, so
    -- refuse rather than guess.
    self:fail(key, 'must be %s; quote it in credentials.yml (%s: "...")', what, key)
  elseif type(v) ~= "string" then
    self:fail(key, "must be %s, not a %s", what, type(v))
  end
  return v
end

-- A string, or nil when absent or "". opts (else the declaration): required, hint, default,
-- choices, secret.
function Params:string(key, opts)
  local spec = self:spec(key)
  opts = opts or spec
  local v = self.config[key]
  if v == nil or v == "" then
    if opts.required then
      missing(self, key, spec, opts)
    end
    return opts.default
  end
  v = text_of(self, key, v, "a string")
  if opts.choices then
    for _, choice in ipairs(opts.choices) do
      if v == choice then
        return v
      end
    end
    self:fail(key, "must be %s, not %s", one_of(opts.choices, "or"), shown(self, key, v))
  end
  return v
end

-- An http:// or https:// URL; opts as for Params:string.
function Params:url(key, opts)
  local v = self:string(key, opts)
  if v ~= nil and not v:lower():match("^https?://.") then
    self:fail(key, "must be an http:// or https:// URL, not %s", shown(self, key, v))
  end
  return v
end

-- An API's base URL: an http:// or https:// URL without trailing slashes.
function Params:base_url(key, default)
  local spec = self:spec(key)
  if default == nil then
    default = spec.default
  end
  local v = self:url(key, { default = default, required = spec.required, hint = spec.hint })
  return v and (v:gsub("/+$", ""))
end

-- The value of `key`, or the declared default when the caller gives none.
local function value_of(self, key, default)
  local v = self.config[key]
  if default == nil then
    default = self:spec(key).default
  end
  return v, default
end

local FLAGS = { ["true"] = true, yes = true, on = true, ["false"] = false, no = false, off = false }

-- A boolean; also the strings true/false, yes/no, on/off in any case.
function Params:flag(key, default)
  local v
  v, default = value_of(self, key, default)
  if v == nil then
    return default
  end
  if type(v) == "boolean" then
    return v
  end
  if type(v) == "string" and FLAGS[v:lower()] ~= nil then
    return FLAGS[v:lower()]
  end
  self:fail(key, "must be true or false, not %s", shown(self, key, v))
end

-- A number; a string holding one is read.
function Params:number(key, default)
  local v
  v, default = value_of(self, key, default)
  if v == nil then
    return default
  end
  local n = tonumber(v)
  if not n or n ~= n then
    self:fail(key, "must be a number, not %s", shown(self, key, v))
  end
  return n
end

-- A number of seconds > 0 (a timeout). Absent with no default: an error, unless declared.
function Params:seconds(key, default)
  local v
  v, default = value_of(self, key, default)
  if v == nil and default == nil and self.declared then
    return nil
  end
  local n = v == nil and default or tonumber(v)
  if not n or n ~= n or n <= 0 then
    self:fail(key, "must be a number of seconds > 0")
  end
  return n
end

-- A list of strings; one string is a list of one. Items are read as by Params:string.
function Params:list(key, default)
  local v
  v, default = value_of(self, key, default)
  if v == nil then
    return default
  end
  if type(v) ~= "table" then
    v = { v }
  elseif next(v) ~= nil and v[1] == nil then
    self:fail(key, "must be a list, not a map")
  end
  local list = {}
  for i, item in ipairs(v) do
    list[i] = text_of(self, key, item, "a list of strings")
  end
  return list
end

-- A map (a table, possibly empty), or nil when absent.
function Params:map(key)
  local v, default = value_of(self, key, nil)
  if v == nil then
    return default
  end
  if type(v) ~= "table" or (next(v) ~= nil and v[1] ~= nil) then
    self:fail(key, "must be a map of names to values, not a %s",
      type(v) == "table" and "list" or type(v))
  end
  return v
end

-- The readers by declared type (the types channel_hooks.c lists: switchboard.hooks).
local READERS = {
  string = Params.string, url = Params.url, base_url = Params.base_url, flag = Params.flag,
  number = Params.number, seconds = Params.seconds, list = Params.list, map = Params.map,
}
for _, type_name in ipairs(require("switchboard.hooks").parameter_types) do
  assert(READERS[type_name], "switchboard.channel: no reader for parameter type " .. type_name)
end

-- One declared parameter, read by its declared type (required checked for every type).
function Params:get(key)
  local spec = self:spec(key)
  if self.declared == nil then
    error("switchboard.channel: p:get needs a channel with channel.parameters", 2)
  end
  local v = self.config[key]
  if spec.required and (v == nil or v == "") then
    missing(self, key, spec, {})
  end
  return READERS[spec.type](self, key)
end

-- Every declared parameter at once: a table of name = value (absent ones without a default
-- are nil), read in name order so the first error is always the same.
function Params:values()
  if self.declared == nil then
    error("switchboard.channel: p:values needs a channel with channel.parameters", 2)
  end
  local keys = {}
  for key in pairs(self.declared) do keys[#keys + 1] = key end
  table.sort(keys)
  local values = {}
  for _, key in ipairs(keys) do
    values[key] = self:get(key)
  end
  return values
end

---------------------------------------------------------------------------------------------------
-- Hooks.

-- A `reject` hook: 403 {"error": "forbidden", "message": reason}.
function M.forbidden(_, reason)
  return { status = 403, json = { error = "forbidden", message = reason } }
end

-- Whether a platform's delivery id (an event id, an update id, a message id) is seen for the
-- first time: platforms deliver again when an answer came late, and a repeat must be answered
-- as usual but not handed to the bot twice. Kept in sb.store for `ttl` seconds (default one
-- hour), shared by every worker. A nil id, or a store that fails or raises, counts as first:
-- better a message twice than none. An id longer than MAX_DELIVERY_ID bytes is remembered by its
-- SHA-256 (the store's keys hold at most 1024 bytes).
local MAX_DELIVERY_ID = 200
function M.first_delivery(channel_name, id, ttl)
  if id == nil or id == json.null then
    return true
  end
  id = tostring(id)
  if #id > MAX_DELIVERY_ID then
    id = sb.hex(sb.digest("sha256", id))
  end
  local ok, added = pcall(sb.store.add, "delivered:" .. tostring(channel_name) .. ":" .. id, true,
    ttl or 3600)
  if not ok or added == nil then
    return true
  end
  return added
end

---------------------------------------------------------------------------------------------------
-- Calls to a platform's API.

-- Whether an answer has a 2xx status.
function M.succeeded(res)
  return res.status >= 200 and res.status <= 299
end

-- sb.http.request(opts), with the answer's body decoded as JSON into res.json whatever its
-- Content-Type (nil when it is not JSON). Returns the answer, or nil and sb.http.request's error.
function M.request(opts)
  local res, err = sb.http.request(opts)
  if not res then
    return nil, err
  end
  if res.json == nil and res.body ~= "" then
    local ok, decoded = pcall(json.decode, res.body)
    if ok then
      res.json = decoded
    end
  end
  return res
end

-- One request that delivers something to a user; a failure is logged at ERROR, not raised, so the
-- next reply still goes out. about = {channel =, api =, what =, to =, detail = function(res)}:
--   "<channel>: sending <what> to <to> failed: <error>"              (no answer)
--   "<channel>: <api> refused <what> to <to>: HTTP <status>: <detail>" (not 2xx)
-- detail(res) reads the platform's error from res.json; without it, or when it gives nil, the
-- first 300 bytes of the body. Returns the answer, or false.
function M.deliver(opts, about)
  local res, err = M.request(opts)
  if not res then
    sb.log.error("%s: sending %s to %s failed: %s", about.channel, about.what, about.to, err)
    return false
  end
  if not M.succeeded(res) then
    local detail = about.detail and about.detail(res) or res.body:sub(1, 300)
    sb.log.error("%s: %s refused %s to %s: HTTP %d: %s", about.channel, about.api, about.what,
      about.to, res.status, detail)
    return false
  end
  return res
end


---------------------------------------------------------------------------------------------------
-- Caches of what checking and making tokens needs: a JWK set (util.jwks_cache) and an OAuth2
-- client-credentials token (util.oauth_token_cache). Each keeps its value in the object (per
-- worker) and, when the host has a store, in sb.store, so the workers share one fetch.

-- sb.store[op](...), or nil when the host has no store (the cache then stays per worker).
local function shared(cache, op, ...)
  if not cache.use_store then
    return nil
  end
  local ok, result = pcall(sb.store[op], ...)
  if ok then
    return result
  end
  if tostring(result):find("has no store", 1, true) then
    cache.use_store = false
    return nil
  end
  error(result, 0)
end

-- The answer's body as JSON: res.json, or the body decoded whatever its Content-Type.
local function body_json(res)
  if res.json ~= nil then
    return res.json
  end
  local ok, decoded = pcall(json.decode, res.body)
  return ok and decoded or nil
end

-- Seconds an answer may be kept by its Cache-Control (max-age less Age; no-store and no-cache
-- count as 0), or `default` when it says nothing.
local function fresh_for(res, default)
  local cc = (res.headers["cache-control"] or ""):lower()
  if cc:find("no-store", 1, true) or cc:find("no-cache", 1, true) then
    return 0
  end
  local max_age = tonumber(cc:match("max%-age%s*=%s*\"?(%d+)"))
  if not max_age then
    return default
  end
  return math.max(0, max_age - (tonumber(res.headers.age) or 0))
end

local function check_url(what, url)
  if type(url) ~= "string" or not url:lower():match("^https?://.") then
    error(("switchboard.channel.%s: the URL must be an http:// or https:// URL"):format(what), 3)
  end
end

local function check_seconds(what, name, v, default)
  if v == nil then
    return default
  end
  if type(v) ~= "number" or v ~= v or v < 0 then
    error(("switchboard.channel.%s: %s must be a number of seconds >= 0"):format(what, name), 3)
  end
  return v
end

local Jwks = {}
Jwks.__index = Jwks

-- The key document a JWKS URL answered: a JWK set {keys = [...]}, or a map of key id -> PEM
-- certificate (Google's x509 metadata URLs), kept as {x509 = map}; nil for anything else.
local function key_document(doc)
  if type(doc) ~= "table" then
    return nil
  end
  if type(doc.keys) == "table" then
    return { keys = doc.keys }
  end
  local any = false
  for kid, pem in pairs(doc) do
    if type(kid) ~= "string" or type(pem) ~= "string" then
      return nil
    end
    any = true
  end
  return any and { x509 = doc } or nil
end

-- The `kid` of a compact token's header, or nil.
local function kid_of(token)
  local head = type(token) == "string" and token:match("^([%w_%-]+)%.")
  local ok, header = pcall(json.decode, head and sb.base64_decode(head) or "")
  if ok and type(header) == "table" and type(header.kid) == "string" then
    return header.kid
  end
  return nil
end

-- util.jwks_cache(url [, opts]): the JWK set at `url`, fetched on first use, kept as its
-- Cache-Control says (else opts.max_age), fetched again for a token whose kid it lacks, but at
-- most once per opts.refetch_interval across the workers, so a flood of made-up kids costs one
-- fetch. opts: refetch_interval (30 s), max_age (3600 s), timeout (10 s), headers, store (true).
function M.jwks_cache(url, opts)
  check_url("jwks_cache", url)
  opts = opts or {}
  local interval = check_seconds("jwks_cache", "refetch_interval", opts.refetch_interval, 30)
  return setmetatable({
    url = url,
    refetch_interval = interval,
    max_age = check_seconds("jwks_cache", "max_age", opts.max_age, 3600),
    timeout = opts.timeout or 10,
    headers = opts.headers,
    use_store = opts.store ~= false,
    store_key = "switchboard.jwks:" .. url,
    doc = nil,
    fetched = 0,
    expires = 0,
    next_fetch = 0,
  }, Jwks)
end

-- Whether a fetch may start now: none in this worker within refetch_interval of the last, and,
-- with a store, none in another worker either.
function Jwks:may_fetch()
  if sb.now() < self.next_fetch then
    return false
  end
  return shared(self, "add", self.store_key .. "#fetch", true, self.refetch_interval) ~= false
end

-- Fetch the set now: the document, or nil and why.
function Jwks:fetch()
  self.next_fetch = sb.now() + self.refetch_interval
  shared(self, "set", self.store_key .. "#fetch", true, self.refetch_interval)
  local res, err = sb.http.request({ url = self.url, headers = self.headers,
    timeout = self.timeout })
  if not res then
    return nil, err
  end
  local doc = res.status == 200 and key_document(body_json(res)) or nil
  if not doc then
    return nil, ("%s answered HTTP %d without a JWK set or certificates"):format(self.url,
      res.status)
  end
  -- Kept at least refetch_interval: max-age=0 must not mean a fetch per token.
  local ttl = math.max(fresh_for(res, self.max_age), self.refetch_interval)
  self.doc, self.fetched, self.expires = doc, sb.now(), sb.now() + ttl
  shared(self, "set", self.store_key, { keys = doc.keys, x509 = doc.x509, fetched = self.fetched,
    expires = self.expires }, ttl)
  return self.doc
end

-- The store's set when it is still fresh and another worker fetched it after this one's copy
-- (older: nil); it becomes this worker's copy.
function Jwks:stored_newer()
  local stored = shared(self, "get", self.store_key)
  local doc = type(stored) == "table" and key_document(stored.keys and stored or stored.x509)
  if not doc or (tonumber(stored.expires) or 0) <= sb.now()
      or (tonumber(stored.fetched) or 0) <= (self.fetched or 0) then
    return nil
  end
  self.doc, self.fetched, self.expires = doc, stored.fetched, stored.expires
  return self.doc
end

-- The set: this worker's copy while fresh, else the store's, else fetched. A failed fetch
-- falls back on the stale copy (logged). nil and why when there is none.
function Jwks:keys()
  local now = sb.now()
  if self.doc and now < self.expires then
    return self.doc
  end
  local stored = self:stored_newer()
  if stored then
    return stored
  end
  if self.doc and not self:may_fetch() then
    return self.doc
  end
  local doc, err = self:fetch()
  if doc then
    return doc
  end
  if self.doc then
    sb.log.warn("fetching the JWK set %s failed (%s): the previous one is kept", self.url, err)
    return self.doc
  end
  return nil, err
end

-- sb.jwt.verify with the key document: a JWK set as it is; from a certificate map, the
-- certificate the token's kid names.
local function verify_with(token, opts, doc)
  if doc.keys then
    opts.key = doc
    return sb.jwt.verify(token, opts)
  end
  local kid = kid_of(token)
  if not kid then
    return nil, "no kid in the token's header: the certificates are chosen by kid"
  end
  opts.key = doc.x509[kid]
  if not opts.key then
    return nil, ("unknown kid %q"):format(kid:sub(1, 64))
  end
  return sb.jwt.verify(token, opts)
end

-- sb.jwt.verify(token, opts) with opts.key the set; a kid the set lacks fetches it again (within
-- the limit) and checks once more. Returns what sb.jwt.verify returns; without a set,
-- nil, "no JWK set: <why>".
function Jwks:verify(token, opts)
  local doc, err = self:keys()
  if not doc then
    return nil, "no JWK set: " .. tostring(err)
  end
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  local claims, reason = verify_with(token, o, doc)
  if claims == nil and reason:find("^unknown kid") then
    -- Another worker may have fetched the set since: its copy first, then a fetch.
    local newer = self:stored_newer()
    if not newer and self:may_fetch() then
      newer = self:fetch()
    end
    if newer then
      return verify_with(token, o, newer)
    end
  end
  return claims, reason
end

local Tokens = {}
Tokens.__index = Tokens

-- util.oauth_token_cache(opts): OAuth2 client-credentials tokens (RFC 6749 §4.4) from
-- opts.token_url, kept until `margin` seconds (60, at most half the lifetime) before their
-- expires_in; one fetch at a time per token URL, client and scope (across the workers with a
-- store). opts: token_url, client_id, client_secret, scope, form (more fields), auth ("body" or
-- "basic"), margin, expires_in (assumed when the answer has none: 3600), timeout (10 s), store.
function M.oauth_token_cache(opts)
  if type(opts) ~= "table" then
    error("switchboard.channel.oauth_token_cache: opts must be a table", 2)
  end
  check_url("oauth_token_cache", opts.token_url)
  if opts.auth ~= nil and opts.auth ~= "body" and opts.auth ~= "basic" then
    error('switchboard.channel.oauth_token_cache: auth must be "body" or "basic"', 2)
  end
  return setmetatable({
    token_url = opts.token_url,
    client_id = opts.client_id,
    client_secret = opts.client_secret,
    scope = opts.scope,
    form = opts.form,
    auth = opts.auth or "body",
    margin = check_seconds("oauth_token_cache", "margin", opts.margin, 60),
    default_expires_in = check_seconds("oauth_token_cache", "expires_in", opts.expires_in, 3600),
    timeout = opts.timeout or 10,
    use_store = opts.store ~= false,
    store_key = ("switchboard.oauth:%s|%s|%s"):format(opts.token_url, tostring(opts.client_id),
      tostring(opts.scope)),
    token = nil,
    refresh_at = 0,
    fetching = false,
  }, Tokens)
end

-- One POST to the token URL: the token, or nil and why.
local function request_token(self)
  local form, headers = { grant_type = "client_credentials" }, {}
  for k, v in pairs(self.form or {}) do form[k] = v end
  form.scope = self.scope
  if self.auth == "basic" then -- RFC 6749 §2.3.1: each part form-encoded, then Basic
    headers.Authorization = "Basic " .. sb.base64(sb.urlencode(tostring(self.client_id)) .. ":"
      .. sb.urlencode(tostring(self.client_secret)))
  else
    form.client_id, form.client_secret = self.client_id, self.client_secret
  end
  local res, err = sb.http.request({ url = self.token_url, form = form, headers = headers,
    timeout = self.timeout })
  if not res then
    return nil, err
  end
  local body = body_json(res)
  if res.status ~= 200 or type(body) ~= "table" or type(body.access_token) ~= "string" then
    return nil, ("%s answered HTTP %d without an access_token: %s"):format(self.token_url,
      res.status, res.body:sub(1, 300))
  end
  local lifetime = tonumber(body.expires_in) or self.default_expires_in
  local ttl = lifetime - math.min(self.margin, lifetime / 2)
  self.token, self.refresh_at = body.access_token, sb.now() + ttl
  if ttl > 0 then
    shared(self, "set", self.store_key, { access_token = body.access_token,
      refresh_at = self.refresh_at }, ttl)
  end
  return body.access_token
end

-- Fetch a token now (this coroutine holds the fetch): the token, or nil and why.
function Tokens:fetch()
  self.fetching = true
  local ok, token, err = pcall(request_token, self)
  self.fetching = false
  shared(self, "del", self.store_key .. "#lock")
  if not ok then
    error(token, 0)
  end
  return token, err
end

-- The store's token (another worker's fetch), which becomes this object's; nil when none.
function Tokens:stored()
  local stored = shared(self, "get", self.store_key)
  if type(stored) ~= "table" or type(stored.access_token) ~= "string" then
    return nil
  end
  self.token, self.refresh_at = stored.access_token, tonumber(stored.refresh_at) or 0
  return self.token
end

-- The token to send: the one kept while fresh, else the store's, else fetched. A caller that
-- finds a fetch under way waits for it (polling every 50 ms, at most the fetch's timeout).
function Tokens:get()
  local lock = self.store_key .. "#lock"
  for _ = 1, math.ceil((self.timeout + 1) / 0.05) do
    if self.token and sb.now() < self.refresh_at then
      return self.token
    end
    local token = self:stored()
    if token then
      return token
    end
    if not self.fetching and shared(self, "add", lock, true, self.timeout + 1) ~= false then
      -- A fetch may have ended between the look above and taking the lock.
      token = self:stored()
      if token then
        shared(self, "del", lock)
        return token
      end
      return self:fetch()
    end
    sb.sleep(0.05)
  end
  return nil, "timed out waiting for another request's fetch of the token"
end

-- Forget the token (the API refused it): the next get fetches another.
function Tokens:invalidate()
  self.token, self.refresh_at = nil, 0
  shared(self, "del", self.store_key)
end

return M
