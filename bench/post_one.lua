-- SPDX-License-Identifier: MIT
-- wrk script: POST a rest-channel message, every request from one sender (the per-sender order
-- then makes all messages go through the bot one at a time: docs/architecture.md).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"sender":"one","message":"hi"}'
wrk.path = "/webhooks/rest/webhook"
