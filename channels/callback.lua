-- SPDX-License-Identifier: MIT
-- The callback channel (docs/contract.md §8), the counterpart of Rasa's CallbackInput: requests as
-- for the rest channel, and every bot message is POSTed on its own, as one JSON object of the
-- collected shapes of docs/contract.md §4.2, to `url`. The webhook answers 200 "success" once
-- processing is done.
--
-- callback:
--   url: "http://localhost:5034/bot"   # required
--   headers: { X-Api-Key: "..." }       # sent with every POST
--   params: { channel: "web" }          # added to the URL's query
--   basic_auth: { username: "u", password: "p" }
--   token: "secret"                     # added to the query as token_name=token
--   token_name: "token"
--   cafile: "/etc/ssl/private-ca.pem"   # verify the URL's certificate with this CA (PEM)
--   timeout: 300                        # seconds per POST (Rasa's default)
-- docs/channels/callback.md is the user's guide.
local sb = require "switchboard"
local output = require "switchboard.output"
local util = require "switchboard.channel"

local channel = { name = "callback" }

channel.parameters = {
  url = { type = "url", required = true, hint = "where to POST the bot's messages" },
  headers = { type = "map", secret = true },
  params = { type = "map" },
  basic_auth = { type = "map", secret = true },
  token = { type = "string", secret = true },
  token_name = { type = "string", default = "token" },
  cafile = { type = "string" },
  -- Rasa's EndpointConfig waits 300 s for an answer (the response timeout still ends a message).
  timeout = { type = "seconds", default = 300 },
}

-- The CA file must be readable now, not at the first reply.
local function readable(p, key, path)
  local f, err = io.open(path, "rb")
  if not f then
    p:fail(key, "cannot be read: %s", err)
  end
  f:close()
  return path
end

local function query_of(v)
  local query = util.copy(v.params or {})
  if v.token then
    query[v.token_name] = v.token
  end
  return next(query) and sb.urlencode(query) or nil
end

function channel.init(config)
  local p = util.params(config, channel, { number_as_text = true })
  local v = p:values()
  local query = query_of(v)
  channel.url = query and (v.url .. (v.url:find("?", 1, true) and "&" or "?") .. query) or v.url
  -- Logs name the URL without its query: the token may be there.
  channel.shown_url = v.url:match("^[^?#]*")
  channel.headers = {}
  for k, value in pairs(v.headers or {}) do channel.headers[k] = tostring(value) end
  local auth = v.basic_auth
  if auth then
    if auth.username == nil then
      p:fail("basic_auth", "needs `username` and `password`")
    end
    channel.headers.Authorization = "Basic " ..
      sb.base64(tostring(auth.username) .. ":" .. tostring(auth.password or ""))
  end
  channel.timeout = v.timeout
  channel.cafile = v.cafile and readable(p, "cafile", v.cafile)
end

local function post(shape)
  local res, err = sb.http.request({
    method = "POST", url = channel.url, headers = channel.headers, json = shape,
    timeout = channel.timeout, ca_file = channel.cafile,
  })
  if not res then
    error(("callback POST to %s failed: %s"):format(channel.shown_url, err), 0)
  end
  if not util.succeeded(res) then
    error(("callback POST to %s answered %d"):format(channel.shown_url, res.status), 0)
  end
end

-- Each bot message becomes the shapes a collector would store; each shape is one POST.
function channel.send_response(recipient_id, message)
  local sink = output.collector(post)
  output.dispatch(sink, recipient_id, message)
end

function channel.ack()
  return { status = 200, body = "success", content_type = "text/plain" }
end

return channel
