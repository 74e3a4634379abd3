---@meta switchboard
-- SPDX-License-Identifier: MIT
-- Editor annotations (lua-language-server) for `require "switchboard"`. Never loaded by the host:
-- the module itself is built in C (src/lua_sb*.c, src/lua_json.c, src/lua_crypto.c).
-- docs/lua-api.md, "The switchboard module", is the reference.
--
-- Convention kept by tests/http/test_annotations.py: the module's own tables are the lower-case
-- classes `switchboard` and `switchboard.<table>`; every function is written `function sb.<path>(`
-- and every other value is a `---@field` of its table's class.

---The host module, shared by every script and read-only.
---```lua
---local sb = require "switchboard"
---```
---@class switchboard
---@field version string The host's version string, e.g. `"0.1.0"`.
local sb = {}

-- ---- sb.json ------------------------------------------------------------------------------------

---The JSON null value: a light userdata, **truthy**. Compare with `v == sb.json.null`.
---@class switchboard.Null: lightuserdata

---The host's JSON codec. Whole numbers decode as integers; empty arrays decode as marked tables.
---@class switchboard.json
---@field null switchboard.Null What JSON `null` decodes to and what encodes as `null` (the same value as `cjson.null`).
sb.json = {}

---Encodes a value as compact JSON. Keys are written in byte order, numbers first.
---Raises on what JSON cannot hold (functions, NaN, excessively sparse arrays, cycles).
---@param value any
---@return string json
function sb.json.encode(value) end

---Decodes one JSON value (RFC 8259, strict). Raises `invalid JSON at character <n>: ...`.
---@param text string
---@return any value
function sb.json.decode(text) end

---Marks `t` (or a new empty table) as a JSON array, so that it encodes as `[]` when empty.
---@generic T: table
---@param t? T
---@return T
function sb.json.array(t) end

-- ---- sb.log -------------------------------------------------------------------------------------

---Lines in the host log, at a level, with the current request id. With more than one argument the
---line is `string.format(fmt, ...)`; with one, `tostring(fmt)`.
---@class switchboard.log
sb.log = {}

---@param fmt any
---@param ... any
function sb.log.debug(fmt, ...) end

---@param fmt any
---@param ... any
function sb.log.info(fmt, ...) end

---@param fmt any
---@param ... any
function sb.log.warn(fmt, ...) end

---The same as `sb.log.warn`.
---@param fmt any
---@param ... any
function sb.log.warning(fmt, ...) end

---@param fmt any
---@param ... any
function sb.log.error(fmt, ...) end

-- ---- sb.store -----------------------------------------------------------------------------------

---A key-value store shared by every worker of the host (docs/lua-api.md, "sb.store"). Each call
---waits for the next turn of the worker's loop (it never blocks the worker). Failures return
---`nil` and a message. Values: strings as they are; tables, numbers and booleans as JSON.
---@class switchboard.store
sb.store = {}

---@param key string At most 1024 bytes.
---@return any value The value, or `nil` when the key is absent or expired.
---@return string? err
function sb.store.get(key) end

---@param key string
---@param value string|table|number|boolean
---@param ttl? number Seconds until the key expires; 0 or nil: never.
---@return true|nil ok
---@return string? err
function sb.store.set(key, value, ttl) end

---Set only when the key is absent: `true` when added, `false` when it existed (a retry seen before).
---@param key string
---@param value string|table|number|boolean
---@param ttl? number
---@return boolean|nil added
---@return string? err
function sb.store.add(key, value, ttl) end

---Add `by` (default 1) to the integer at key (absent counts as 0); the TTL is kept.
---@param key string
---@param by? integer
---@return integer|nil value
---@return string? err
function sb.store.incr(key, by) end

---@param key string
---@return boolean|nil existed
---@return string? err
function sb.store.del(key) end

---@param key string
---@param ttl number Seconds; 0 removes the expiry.
---@return boolean|nil exists
---@return string? err
function sb.store.expire(key, ttl) end

---Append to the list at key.
---@param key string
---@param value string|table|number|boolean
---@return integer|nil length The list's length after (0 when a waiting pop took the value).
---@return string? err
function sb.store.push(key, value) end

---Take the first value of the list at key; with `wait`, an empty list waits that many seconds for a push (from any worker).
---@param key string
---@param wait? number Seconds, at most the response timeout.
---@return any value The value, or `nil` (empty, or nothing came in time).
---@return string? err
function sb.store.pop(key, wait) end

---@param key string
---@return integer|nil length
---@return string? err
function sb.store.length(key) end

-- ---- sb.connections -----------------------------------------------------------------------------

---Open connections (WebSocket), by the sender they are bound to (`conn:bind`).
---@class switchboard.connections
sb.connections = {}

---Send `data` to every open connection bound to `sender_id`, on whichever worker holds it.
---@param sender_id string
---@param data string Text (UTF-8), or bytes with `binary`.
---@param binary? boolean Send a binary message instead of a text one.
---@return integer count How many of this host's connections it was handed to (0: none is open here; with the Redis store, other hosts' connections get it too, uncounted).
function sb.connections.send(sender_id, data, binary) end

-- ---- sb.http ------------------------------------------------------------------------------------

---@class switchboard.http
sb.http = {}

---The options of `sb.http.request`.
---@class switchboard.HttpOptions
---@field url string Required: `http://` or `https://`. Put query parameters in it (`sb.urlencode`).
---@field method? string Default `"POST"` with a body, else `"GET"`. `"HEAD"` reads no body.
---@field headers? table<string, string|number> At most 64. Values go through `tostring`.
---@field body? string Sent as is. Give at most one of `body`, `json` and `form`.
---@field json? any Sent as `sb.json.encode(json)` with `Content-Type: application/json`.
---@field form? table<string, any> Sent as `sb.urlencode(form)` with `Content-Type: application/x-www-form-urlencoded`.
---@field timeout? number Seconds for the whole exchange, > 0 and at most 86400. Default 30.
---@field ca_file? string A PEM file of CA certificates to verify the server with. Default: the system's store.

---An answer of `sb.http.request`, whatever its status.
---@class switchboard.HttpResponse
---@field status integer The HTTP status: 404 and 500 are answers too, not errors.
---@field headers table<string, string> Names in lower case; repeated headers joined with `", "`.
---@field body string The body as received (decompressed); `""` when there is none.
---@field json? any The body decoded as JSON when the `Content-Type` contains `json` and it decodes.

---Makes an HTTP(S) request; the request's coroutine waits, the worker does not. Allowed while
---handling a request (hooks, senders, the bot) and in a channel's `startup`. Returns the answer, or
---`nil` and a message (`timed out`, a connection error, ...). Misuse raises.
---@param opts switchboard.HttpOptions
---@return switchboard.HttpResponse? response
---@return string? err
function sb.http.request(opts) end

-- ---- the rest of the module ---------------------------------------------------------------------

---A random (version 4) uuid as 32 lower-case hex characters, without dashes.
---@return string
function sb.uuid() end

---The wall-clock time in seconds since the epoch, a float.
---@return number
function sb.now() end

---Parks the request's coroutine for `seconds` (≥ 0); the worker serves other requests meanwhile.
---Only while handling a request, from its own coroutine.
---@param seconds number
function sb.sleep(seconds) end

---@alias switchboard.HashAlgorithm "sha1"|"sha256"|"sha512"|"md5"

---The HMAC of `data` with `key`, as raw bytes (encode with `sb.hex` or `sb.base64`).
---@param alg switchboard.HashAlgorithm
---@param key string
---@param data string
---@return string bytes
function sb.hmac(alg, key, data) end

---The hash of `data`, as raw bytes.
---@param alg switchboard.HashAlgorithm
---@param data string
---@return string bytes
function sb.digest(alg, data) end

---The bytes as lower-case hex, two characters per byte.
---@param bytes string|number
---@return string
function sb.hex(bytes) end

---The bytes in standard base64, padded, without line breaks.
---@param bytes string|number
---@return string
function sb.base64(bytes) end

---Decodes standard or URL-safe base64 (padding optional, white space skipped).
---@param s string
---@return string? bytes
---@return string? err `"invalid base64"`
function sb.base64_decode(s) end

---Compares two strings in a time that does not depend on where they differ.
---@param a string
---@param b string
---@return boolean
function sb.secure_compare(a, b) end

---JSON Web Tokens (compact JWS): `verify` and `sign` (docs/lua-api.md, "sb.jwt").
---@class switchboard.jwt
sb.jwt = {}

---@class switchboard.JwtVerifyOptions
---@field secret? string The shared secret of the HS algorithms (never a PEM).
---@field key? string|table A PEM public key, certificate or private key; a JWK; a JWK set `{keys = {...}}` (a table or JSON text).
---@field algorithms? string|string[] Allowed algorithms (default: what the key can check).
---@field leeway? number Seconds of clock difference allowed in `exp`, `nbf` and `iat`.
---@field iss? string|string[] Accepted issuers.
---@field aud? string|string[] Accepted audiences.
---@field require? string|string[] Claims that must be present.
---@field now? number The time to check against (default `sb.now()`).

---Checks a token: its claims and header, or `nil` and a reason (`"expired"`, `"bad signature"`,
---`"algorithm not allowed"`, `"unknown kid ..."`, `"malformed token: ..."`, ...). Bad options raise.
---@param token string
---@param opts switchboard.JwtVerifyOptions
---@return table? claims
---@return table|string header_or_reason
function sb.jwt.verify(token, opts) end

---Makes a token: `key` is the secret (HS256/384/512) or a PEM private key (RS*, PS*, ES256/384).
---@param claims table
---@param key string
---@param alg "HS256"|"HS384"|"HS512"|"RS256"|"RS384"|"RS512"|"PS256"|"PS384"|"PS512"|"ES256"|"ES384"
---@param header? table More header fields (`kid`, `typ`).
---@return string token
function sb.jwt.sign(claims, key, alg, header) end

---`s` without leading and trailing white space (ASCII and Unicode spaces, as Python's `str.strip()`).
---@param s string
---@return string
function sb.strip(s) end

---Percent-encodes a string (form encoding: a space becomes `+`), or builds `name=value&...` from a
---table, keys sorted; a table value repeats its key per element.
---@param value string|table<string, any>
---@return string
function sb.urlencode(value) end

---Decodes form encoding: `+` becomes a space, `%XX` its byte.
---@param s string
---@return string
function sb.urldecode(s) end

---What `sb.http_error` raises: `tostring` gives `"<status> <error>: <message>"`.
---@class switchboard.HttpError
---@field status integer 400 to 599.
---@field error string The error code, e.g. `"invalid_json"`.
---@field message string

---Raises an HTTP error: uncaught, the request is answered with `status` and
---`{"error": code, "message": message}`.
---@param status integer 400 to 599
---@param code string
---@param message? string Default `""`.
function sb.http_error(status, code, message) end

---Whether `value` was raised by `sb.http_error` (or by the host, as `req.json` does).
---@param value any
---@return boolean
function sb.is_http_error(value) end

return sb
