// SPDX-License-Identifier: MIT
// Outside check for tests/http/test_channel_slack.py: requests signed as Slack signs them,
// checked with @slack/bolt's verifySlackRequest, and the answer a Bolt app gives to each.
// Reads JSON from stdin:
//   {"signing_secret": "...", "requests": [{"body": "...", "content_type": "...",
//                                         "sign": true, "timestamp": <unix seconds>}]}
// Each request is signed (unless "sign" is false: sent without Slack's headers) and posted to a
// Bolt app (HTTPReceiver, on 127.0.0.1) whose command, shortcut, view and action listeners only
// ack(), as a Bolt user writes them. Writes one JSON array:
//   [{"headers": {<the headers to send>}, "valid": <isValidSlackRequest>,
//     "bolt": {"status": <Bolt's status>, "body": "<Bolt's body>"}}]
"use strict";
const crypto = require("crypto");
const http = require("http");
const { App, HTTPReceiver, LogLevel, isValidSlackRequest } = require("@slack/bolt");

const PATH = "/slack/events";

// Slack's signature: v0=hex(HMAC-SHA256(secret, "v0:<timestamp>:<raw body>")).
function headersFor(secret, r) {
  const headers = { "content-type": r.content_type };
  if (r.sign === false) {
    return headers;
  }
  const ts = String(r.timestamp || Math.floor(Date.now() / 1000));
  const mac = crypto.createHmac("sha256", secret).update(`v0:${ts}:${r.body}`).digest("hex");
  headers["x-slack-request-timestamp"] = ts;
  headers["x-slack-signature"] = `v0=${mac}`;
  return headers;
}

function post(port, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path: PATH, method: "POST", headers },
      (res) => {
        let data = "";
        res.setEncoding("utf8");
        res.on("data", (chunk) => { data += chunk; });
        res.on("end", () => resolve({ status: res.statusCode, body: data }));
      });
    req.on("error", reject);
    req.end(body);
  });
}

async function main(input) {
  const secret = input.signing_secret;
  const receiver = new HTTPReceiver({ signingSecret: secret, endpoints: PATH });
  // authorize instead of a token: no call to Slack's auth.test (tests run offline).
  const app = new App({ receiver, logLevel: LogLevel.ERROR,
    authorize: async () => ({ botToken: "xoxb-not-used", botId: "B0BOLT", botUserId: "U0BOLT" }) });
  const ack = async ({ ack: done }) => { await done(); };
  app.command(/.*/, ack);
  app.shortcut(/.*/, ack);
  app.view(/.*/, ack);
  app.action(/.*/, ack);
  const server = await app.start({ port: 0, host: "127.0.0.1" });
  const port = server.address().port;
  const results = [];
  try {
    for (const r of input.requests) {
      const headers = headersFor(secret, r);
      const valid = r.sign !== false && isValidSlackRequest({
        signingSecret: secret, body: r.body,
        headers: { "x-slack-signature": headers["x-slack-signature"],
          "x-slack-request-timestamp": Number(headers["x-slack-request-timestamp"]) },
      });
      results.push({ headers, valid, bolt: await post(port, headers, r.body) });
    }
  } finally {
    await app.stop();
  }
  return results;
}

let text = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { text += chunk; });
process.stdin.on("end", () => {
  main(JSON.parse(text)).then((results) => {
    process.stdout.write(JSON.stringify(results));
  }, (err) => {
    process.stderr.write(`${err && err.stack || err}\n`);
    process.exit(1);
  });
});
