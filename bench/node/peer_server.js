// SPDX-License-Identifier: MIT
// The peer of bench/socketio_echo.py: a Node socket.io 4 server doing what Switchboard's socketio
// channel does with an echo bot: session_request -> session_confirm; user_uttered -> one
// bot_uttered {text: "echo: " + message} to the socket. Usage: node peer_server.js PORT
"use strict";
const http = require("http");
const { Server } = require("socket.io");
const server = http.createServer();
const io = new Server(server, { cors: { origin: "*" } });
io.on("connection", (socket) => {
  socket.on("session_request", (data) => {
    const id = (data && data.session_id) || require("crypto").randomUUID().replace(/-/g, "");
    socket.emit("session_confirm", id);
  });
  socket.on("user_uttered", (data) => {
    socket.emit("bot_uttered", { text: "echo: " + data.message });
  });
});
server.listen(Number(process.argv[2]), "127.0.0.1");
