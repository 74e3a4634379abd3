// SPDX-License-Identifier: MIT
// Outside check for tests/http/test_channel_twilio.py: the official twilio library signs and
// validates webhook calls. Reads JSON from stdin:
//   {"auth_token": "...", "cases": [{"signed_url": "...", "url": "...",
//                                   "params": {"Name": "value" or ["v1", "v2"]}, "body": "..."}]}
// `signed_url` is the URL Twilio signs (the one typed in its console), `url` the one the server
// received. With `body` (a JSON-bodied webhook, `url` carries bodySHA256) the call is checked with
// validateRequestWithBody, else with validateRequest over `params`. Writes one JSON array:
//   [{"signature": "<X-Twilio-Signature>", "valid": true | false, "error": "..." (if it threw)}]
"use strict";
const twilio = require("twilio");

function check(token, c) {
  const params = c.params || {};
  const signature = twilio.getExpectedTwilioSignature(token, c.signed_url, params);
  try {
    const valid = c.body !== undefined
      ? twilio.validateRequestWithBody(token, signature, c.url, c.body)
      : twilio.validateRequest(token, signature, c.url, params);
    return { signature, valid };
  } catch (e) {
    // new URL() throws on what it cannot parse: the library refuses the request.
    return { signature, valid: false, error: String(e) };
  }
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const { auth_token: token, cases } = JSON.parse(input);
  process.stdout.write(JSON.stringify(cases.map((c) => check(token, c))));
});
