-- SPDX-License-Identifier: MIT
-- wrk script: POST a rest-channel message from a sender never seen before (docs/contract.md §5:
-- messages of different senders are handled concurrently).
local counter = 0
local thread_tag = tostring(math.random(1, 1e9))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  counter = counter + 1
  return wrk.format(nil, "/webhooks/rest/webhook", nil,
    '{"sender":"s' .. thread_tag .. '-' .. counter .. '","message":"hello there"}')
end
