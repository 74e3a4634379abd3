---@meta switchboard.channel
-- SPDX-License-Identifier: MIT
-- Editor annotations (lua-language-server) for `require "switchboard.channel"`, the helpers the
-- bundled channels share (lua/switchboard/channel.lua). Never loaded by the host.
-- docs/lua-api.md, "Helpers for channels", is the reference.

---@class switchboard.channel
local util = {}

---@class switchboard.ParamsOptions
---@field needs? string[] Parameter names: a `config` that is not a table then raises `the <name> channel needs parameters: ...`.
---@field number_as_text? boolean Let `p:string` and `p:list` accept a number, written as text.

---@class switchboard.StringOptions
---@field required? boolean An absent value raises ``the <name> channel needs the `<key>` parameter``.
---@field hint? string With `required`: added to that error in parentheses.
---@field default? string The result when the value is absent (`nil` or `""`).
---@field choices? string[] The allowed values.

---A reader of `init`'s parameters. Its errors name the channel and the key.
---@class switchboard.Params
---@field config table The table `init` got (`{}` when it was not a table).
---@field name string The channel's name, used in every error.
---@field declared? table<string, switchboard.ParameterDeclaration> The channel's `parameters`, when `util.params` got the channel table.
local Params = {}

---`config[key]` as a string, or `opts.default` when absent.
---@param key string
---@param opts? switchboard.StringOptions
---@return string?
function Params:string(key, opts) end

---An `http://` or `https://` URL, or `opts.default` when absent.
---@param key string
---@param opts? switchboard.StringOptions
---@return string?
function Params:url(key, opts) end

---An API's base URL without trailing `/`, or `default` when absent.
---@param key string
---@param default string
---@return string
function Params:base_url(key, default) end

---A boolean (`true`, `yes`, `on`, `false`, `no`, `off` as strings too), or `default`.
---@param key string
---@param default boolean
---@return boolean
function Params:flag(key, default) end

---A number (a string that holds one is read), or `default`.
---@param key string
---@param default number?
---@return number?
function Params:number(key, default) end

---A number of seconds > 0, or `default`.
---@param key string
---@param default number
---@return number
function Params:seconds(key, default) end

---A new list of strings (one string is a list of one), or `default`.
---@param key string
---@param default string[]?
---@return string[]?
function Params:list(key, default) end

---The table `config[key]` itself, or `nil` when absent.
---@param key string
---@return table?
function Params:map(key) end

---The declaration of `key` in `channel.parameters` (`{}` when the channel declares none). A key
---the channel did not declare raises.
---@param key string
---@return switchboard.ParameterDeclaration
function Params:spec(key) end

---One declared parameter, read by its declared type; `required` is checked for every type.
---@param key string
---@return any
function Params:get(key) end

---Every declared parameter at once, as a table of name = value (absent ones without a default
---are `nil`), read in name order. Needs a channel with `channel.parameters`.
---@return table<string, any>
function Params:values() end

---Raises ``<name>: `<key>` <fmt:format(...)>``.
---@param key string
---@param fmt string
---@param ... any
function Params:fail(key, fmt, ...) end

---A reader for `config`, the table `init` got. The second argument is the channel's name, or the
---channel table itself (its `name`, and its `parameters` declarations for `p:values()`).
---@param config table?
---@param name string|switchboard.Channel
---@param opts? switchboard.ParamsOptions
---@return switchboard.Params
function util.params(config, name, opts) end

---Neither `nil` nor `sb.json.null`.
---@param v any
---@return boolean
function util.non_null(v) end

---A string other than `""`.
---@param v any
---@return boolean
function util.nonempty_string(v) end

---A table that is not an array; with `raw` (the text it was decoded from) an empty table counts
---only when the text is an object.
---@param v any
---@param raw? string
---@return boolean
function util.is_object(v, raw) end

---A table as its JSON text, anything else through `tostring`.
---@param v any
---@return string
function util.as_text(v) end

---An id as text: a whole number without `.0`, a non-empty string as it is; else `nil`.
---@param v any
---@return string?
function util.id_text(v) end

---A shallow copy.
---@generic T: table
---@param t T
---@return T
function util.copy(t) end

---The parts a text is sent as: stripped, split on blank lines, blank parts left out.
---@param text any
---@return string[]
function util.text_parts(text) end

---A `reject` hook: 403 `{"error": "forbidden", "message": reason}`.
---@param req switchboard.Request
---@param reason string
---@return switchboard.Response
function util.forbidden(req, reason) end

---Whether a platform's delivery id is seen for the first time (kept in `sb.store` for `ttl` seconds, default 3600): answer a repeat as usual, without handing it to the bot again.
---@param channel_name string
---@param id string|number|nil
---@param ttl? number
---@return boolean first
function util.first_delivery(channel_name, id, ttl) end

---`sb.http.request(opts)`, with the answer's body decoded as JSON into `res.json` whatever its
---`Content-Type`.
---@param opts switchboard.HttpOptions
---@return switchboard.HttpResponse? response
---@return string? err
function util.request(opts) end

---Whether `res.status` is 200 to 299.
---@param res switchboard.HttpResponse
---@return boolean
function util.succeeded(res) end

---@class switchboard.DeliverAbout
---@field channel string The channel's name, first in the log line.
---@field api string The API's name, e.g. `"the Send API"`.
---@field what string What is sent, e.g. `"a text"`.
---@field to string The recipient, as text.
---@field detail? fun(res: switchboard.HttpResponse): string? The platform's error as text.

---One request that delivers something to a user; a failure is logged at ERROR, not raised.
---@param opts switchboard.HttpOptions
---@param about switchboard.DeliverAbout
---@return switchboard.HttpResponse|false
function util.deliver(opts, about) end


---@class switchboard.JwksCache
local JwksCache = {}

---`sb.jwt.verify(token, opts)` with the set as `opts.key`; an unknown `kid` fetches the set again
---(at most once per `refetch_interval`).
---@param token string
---@param opts? switchboard.JwtVerifyOptions
---@return table? claims
---@return table|string header_or_reason
function JwksCache:verify(token, opts) end

---The set `{keys = {...}}`, or `nil, err`.
---@return table? set
---@return string? err
function JwksCache:keys() end

---@class switchboard.JwksCacheOptions
---@field refetch_interval? number Seconds between two fetches (30).
---@field max_age? number Seconds a set without `Cache-Control: max-age` is kept (3600).
---@field timeout? number Seconds for a fetch (10).
---@field headers? table<string, string>
---@field store? boolean `false`: each worker keeps its own set.

---A JWK set fetched from `url` and kept (Cache-Control, shared through `sb.store`).
---@param url string
---@param opts? switchboard.JwksCacheOptions
---@return switchboard.JwksCache
function util.jwks_cache(url, opts) end

---@class switchboard.OAuthTokenCache
local OAuthTokenCache = {}

---The access token, or `nil` and why.
---@return string? token
---@return string? err
function OAuthTokenCache:get() end

---Forgets the token: the next `get` fetches another.
function OAuthTokenCache:invalidate() end

---@class switchboard.OAuthTokenOptions
---@field token_url string
---@field client_id? string
---@field client_secret? string
---@field scope? string
---@field form? table<string, string> More form fields.
---@field auth? "body"|"basic"
---@field margin? number Seconds before expiry the token is renewed (60).
---@field expires_in? number Lifetime assumed when the answer gives none (3600).
---@field timeout? number Seconds for the fetch (10).
---@field store? boolean `false`: each worker keeps its own token.

---OAuth2 client-credentials tokens, kept until shortly before they expire; one fetch at a time.
---@param opts switchboard.OAuthTokenOptions
---@return switchboard.OAuthTokenCache
function util.oauth_token_cache(opts) end

return util
