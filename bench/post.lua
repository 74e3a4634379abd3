-- SPDX-License-Identifier: MIT
-- wrk script: POST a rest-channel message, a different sender on each connection's requests.
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  counter = counter + 1
  return wrk.format(nil, "/webhooks/rest/webhook", nil,
    '{"sender":"user' .. (counter % 1000) .. '","message":"hello there"}')
end
