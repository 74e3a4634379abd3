// SPDX-License-Identifier: MIT
// The load of bench/socketio_echo.py: CLIENTS socket.io-client sessions over WebSocket, each
// sending user_uttered and waiting for its bot_uttered, again and again for SECONDS. Prints
// {messages, seconds, errors, p50_ms, p99_ms}. Usage: node load.js URL CLIENTS SECONDS
"use strict";
const { io } = require("socket.io-client");
const [url, clients, seconds] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
let messages = 0, errors = 0;
const latencies = [];
let stopping = false;
// Session ids unique to this process: several load processes run at once.
const tag = "p" + process.pid + "-";

function session(i) {
  return new Promise((resolve) => {
    const s = io(url, { transports: ["websocket"], reconnection: false, forceNew: true });
    let sent = 0;
    const next = () => {
      if (stopping) { s.close(); resolve(); return; }
      sent = process.hrtime.bigint();
      s.emit("user_uttered", { message: "hi " + i, session_id: tag + i });
    };
    s.on("connect", () => s.emit("session_request", { session_id: tag + i }));
    s.on("session_confirm", next);
    s.on("bot_uttered", () => {
      messages++;
      latencies.push(Number(process.hrtime.bigint() - sent) / 1e6);
      next();
    });
    s.on("connect_error", () => { errors++; resolve(); });
  });
}

const started = Date.now();
const all = [];
for (let i = 0; i < clients; i++) all.push(session(i));
setTimeout(() => { stopping = true; }, seconds * 1000);
Promise.all(all).then(() => {
  latencies.sort((a, b) => a - b);
  const at = (q) => latencies.length ? latencies[Math.floor(q * (latencies.length - 1))] : 0;
  console.log(JSON.stringify({ messages, seconds: (Date.now() - started) / 1000, errors,
                               p50_ms: at(0.5), p99_ms: at(0.99) }));
  process.exit(0);
});
