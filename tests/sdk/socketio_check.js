// SPDX-License-Identifier: MIT
// Outside check: the official socket.io-client (what Rasa's chat widgets use) talks to the
// socketio channel. Input (stdin, JSON): {url, path, transports, sessions, messages, session_id,
// auth, timeout}. For each of `sessions` clients at once: connect, session_request, then each
// message as user_uttered, collecting every bot_uttered until `expect` per message arrived.
// Output (stdout, JSON): per session {connected, transport, confirm, replies, error}.
"use strict";
const { io } = require("socket.io-client");

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", async () => {
  const spec = JSON.parse(input);
  const runs = [];
  for (let i = 0; i < (spec.sessions || 1); i++) runs.push(one(spec, i));
  const results = await Promise.all(runs);
  process.stdout.write(JSON.stringify(results));
  process.exit(0);
});

function one(spec, index) {
  return new Promise((resolve) => {
    const got = { connected: false, transport: null, confirm: null, replies: [], error: null,
                  upgraded: false };
    const socket = io(spec.url, { path: spec.path || "/socket.io", transports: spec.transports,
                                  auth: spec.auth, reconnection: false, forceNew: true });
    const expect = (spec.messages || []).length * (spec.expect || 1);
    const done = () => { got.transport = socket.io.engine ? socket.io.engine.transport.name : null;
                         socket.close(); resolve(got); };
    const timer = setTimeout(() => { got.error = got.error || "timed out"; done(); },
                             spec.timeout || 10000);
    socket.on("connect", () => {
      got.connected = true;
      socket.io.engine.on("upgrade", () => (got.upgraded = true));
      const sid = spec.session_id ? spec.session_id + "-" + index : undefined;
      socket.emit("session_request", sid ? { session_id: sid } : {});
    });
    socket.on("connect_error", (err) => { got.error = String(err.message || err);
                                          clearTimeout(timer); done(); });
    socket.on("session_confirm", async (sessionId) => {
      got.confirm = sessionId;
      for (const m of spec.messages || []) {
        socket.emit("user_uttered", { message: m + " " + index, session_id: sessionId,
                                      customData: { page: "test" } });
        if (spec.pause) await new Promise((r) => setTimeout(r, spec.pause));
      }
      if (expect === 0) { clearTimeout(timer); done(); }
    });
    socket.on("bot_uttered", (msg) => {
      got.replies.push(msg);
      if (got.replies.length >= expect) {
        // Stay a moment on the wire when the test wants the upgrade to have happened.
        setTimeout(() => { clearTimeout(timer); done(); }, spec.linger || 0);
      }
    });
  });
}
