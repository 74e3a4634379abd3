// SPDX-License-Identifier: MIT
// Outside check: the `ws` package (the WebSocket client most Node programs use) talks to the
// host. Input (stdin, JSON): {url, messages: [text | {binary: base64}], close: {code, reason}}.
// Output (stdout, JSON): what it received, the pong, and the close the server answered with.
"use strict";
const WebSocket = require("ws");

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  const spec = JSON.parse(input);
  const got = { messages: [], pong: null, close: null, extensions: null, error: null };
  const ws = new WebSocket(spec.url); // offers permessage-deflate, which the host declines
  const expected = spec.expect || spec.messages.length;
  ws.on("open", () => {
    got.extensions = ws.extensions;
    ws.ping(Buffer.from("are you there"));
    for (const m of spec.messages) {
      if (typeof m === "string") ws.send(m);
      else ws.send(Buffer.from(m.binary, "base64"), { binary: true });
    }
  });
  ws.on("pong", (data) => (got.pong = data.toString()));
  ws.on("message", (data, isBinary) => {
    got.messages.push(isBinary ? { binary: data.toString("base64") } : data.toString());
    if (got.messages.length === expected) ws.close(spec.close.code, spec.close.reason);
  });
  ws.on("close", (code, reason) => {
    got.close = { code, reason: reason.toString() };
    process.stdout.write(JSON.stringify(got));
  });
  ws.on("error", (err) => {
    got.error = String(err);
    process.stdout.write(JSON.stringify(got));
    process.exit(0);
  });
});
