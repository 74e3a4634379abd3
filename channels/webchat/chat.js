// SPDX-License-Identifier: MIT
// Switchboard's web chat (docs/channels/webchat.md). No framework, no dependency: a small
// Engine.IO v4 / Socket.IO v5 client over the browser's WebSocket talks to the socketio channel
// (docs/channels/socketio.md) with Rasa's events: session_request -> session_confirm,
// user_uttered -> bot_uttered.
//
// Every element with the attribute data-switchboard-chat becomes a chat. Its data attributes:
//   data-server          the host's base URL (default: this page's origin)
//   data-socketio-path   the socketio channel's socketio_path (default /socket.io)
//   data-user-event      the channel's user_message_evt (default user_uttered)
//   data-bot-event       the channel's bot_message_evt (default bot_uttered)
//   data-storage-key     the localStorage key prefix (default switchboard-chat)
//   data-metadata        JSON sent with every message as customData (default none)
(function () {
  "use strict";

  var RETRY_FIRST = 500;   // ms before the first reconnect; doubled each failure
  var RETRY_MAX = 15000;   // ms, the longest wait between two attempts
  var OPEN_TIMEOUT = 10000; // ms for the server's open packet
  var KEPT = 100;          // messages of the transcript kept across reloads

  function parse(text) {
    try { return JSON.parse(text); } catch (e) { return undefined; }
  }

  // ---- Engine.IO v4 / Socket.IO v5 over one WebSocket (default namespace) ----------------------
  //
  // Engine.IO packets are a digit and data: 0 open, 1 close, 2 ping, 3 pong, 4 message, 6 noop.
  // A message carries a Socket.IO packet: 0 connect, 1 disconnect, 2 event, 3 ack, 4 refused.
  function Link(url, on) {
    this.url = url;
    this.on = on;       // {open(), event(name, args), refused(message), close(reason)}
    this.ws = null;
    this.ready = false; // Socket.IO connected: events may be emitted
    this.limit = OPEN_TIMEOUT;
    this.timer = 0;
  }

  Link.prototype.open = function () {
    var self = this;
    var ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onmessage = function (e) { if (self.ws === ws) self.packet(String(e.data)); };
    ws.onclose = function () { if (self.ws === ws) self.lost("the connection closed"); };
    ws.onerror = function () { /* onclose follows */ };
    this.alive();
  };

  // The server pings every pingInterval: silence for pingInterval + pingTimeout means it is gone.
  Link.prototype.alive = function () {
    var self = this;
    clearTimeout(this.timer);
    this.timer = setTimeout(function () { self.lost("the server stopped answering"); },
      this.limit);
  };

  Link.prototype.packet = function (p) {
    var kind = p.charAt(0);
    this.alive();
    if (kind === "0") {
      var o = parse(p.slice(1)) || {};
      this.limit = (o.pingInterval || 25000) + (o.pingTimeout || 20000);
      this.alive();
      this.ws.send("40");
    } else if (kind === "2") {
      this.ws.send("3" + p.slice(1));
    } else if (kind === "1") {
      this.lost("the server closed the session");
    } else if (kind === "4") {
      this.socketio(p.slice(1));
    }
  };

  Link.prototype.socketio = function (p) {
    var kind = p.charAt(0);
    var rest = p.slice(1);
    if (rest.charAt(0) === "/") return; // another namespace: not ours
    rest = rest.replace(/^\d+/, "");    // an ack id
    if (kind === "0") {
      this.ready = true;
      this.on.open();
    } else if (kind === "2") {
      var args = parse(rest);
      if (Array.isArray(args) && typeof args[0] === "string") this.on.event(args[0], args.slice(1));
    } else if (kind === "4") {
      var err = parse(rest);
      this.on.refused(err && err.message ? String(err.message) : "refused");
      this.lost("refused by the server");
    } else if (kind === "1") {
      this.lost("disconnected by the server");
    }
  };

  Link.prototype.emit = function (name, data) {
    if (!this.ready || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send("42" + JSON.stringify([name, data]));
    return true;
  };

  // The connection is gone (or given up): tell the chat once.
  Link.prototype.lost = function (reason) {
    var ws = this.ws;
    if (!ws) return;
    this.ws = null;
    this.ready = false;
    clearTimeout(this.timer);
    try { ws.close(); } catch (e) { /* already closed */ }
    this.on.close(reason);
  };

  // Leave on purpose: Socket.IO disconnect, then Engine.IO close. No reconnect follows.
  Link.prototype.shutdown = function () {
    var ws = this.ws;
    if (!ws) return;
    this.ws = null;
    this.ready = false;
    clearTimeout(this.timer);
    try { ws.send("41"); ws.send("1"); ws.close(); } catch (e) { /* already closed */ }
  };

  // ---- the page -----------------------------------------------------------------------------

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    if (text != null) node.textContent = text;
    return node;
  }

  // Only web addresses (and inline images) are shown: no javascript: links from a bot.
  function safeUrl(value, image) {
    if (typeof value !== "string" || value === "") return null;
    if (image && /^data:image\/(png|gif|jpeg|webp|svg\+xml)[;,]/i.test(value)) return value;
    try {
      var u = new URL(value, location.href);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  function socketUrl(server, path) {
    var base = new URL(server || location.href, location.href);
    var scheme = base.protocol === "https:" ? "wss:" : "ws:";
    path = "/" + (path || "/socket.io").replace(/^\/+|\/+$/g, "");
    return scheme + "//" + base.host + path + "/?EIO=4&transport=websocket";
  }

  var instances = 0;

  function Chat(root) {
    var d = root.dataset;
    this.root = root;
    this.userEvent = d.userEvent || "user_uttered";
    this.botEvent = d.botEvent || "bot_uttered";
    this.key = d.storageKey || "switchboard-chat";
    this.metadata = d.metadata ? parse(d.metadata) : undefined;
    this.url = socketUrl(d.server, d.socketioPath);
    this.sessionId = this.load("session");
    this.transcript = this.load("transcript") || [];
    this.pending = [];   // [text, bubble] typed while offline, sent once connected
    this.attempt = 0;
    this.retry = 0;
    this.state = "";
    this.build(instances++);
    this.restore();
    this.connect();
  }

  Chat.prototype.load = function (name) {
    try { return parse(localStorage.getItem(this.key + ":" + name)); } catch (e) { return null; }
  };

  Chat.prototype.save = function (name, value) {
    try { localStorage.setItem(this.key + ":" + name, JSON.stringify(value)); } catch (e) { /* private mode */ }
  };

  Chat.prototype.build = function (n) {
    var id = "sb-chat-" + n;
    this.status = el("p", { "class": "sb-status", role: "status", id: id + "-status" });
    this.log = el("div", { "class": "sb-log", role: "log", "aria-live": "polite",
      "aria-relevant": "additions", "aria-label": "Conversation", tabindex: "0" });
    this.form = el("form", { "class": "sb-form" });
    this.input = el("input", { id: id + "-input", type: "text", autocomplete: "off",
      enterkeyhint: "send", maxlength: "4000", "aria-describedby": id + "-status" });
    var label = el("label", { "for": id + "-input", "class": "sb-visually-hidden" }, "Your message");
    var send = el("button", { type: "submit", "class": "sb-send" }, "Send");
    this.form.append(label, this.input, send);
    this.root.append(this.status, this.log, this.form);
    var self = this;
    this.form.addEventListener("submit", function (e) {
      e.preventDefault();
      var text = self.input.value.trim();
      if (text) self.send(text);
      self.input.value = "";
      self.input.focus();
    });
    window.addEventListener("online", function () { if (self.retry) self.retryNow(); });
    if (n === 0) this.input.focus();
  };

  Chat.prototype.setState = function (state, text) {
    this.state = state;
    this.root.setAttribute("data-state", state);
    if (this.status.textContent !== text) this.status.textContent = text;
  };

  // ---- the connection, with reconnects ----

  Chat.prototype.connect = function () {
    var self = this;
    this.retry = 0;
    if (this.state !== "reconnecting") this.setState("connecting", "Connecting…");
    this.link = new Link(this.url, {
      open: function () {
        self.link.emit("session_request", { session_id: self.sessionId || null });
      },
      event: function (name, args) { self.event(name, args); },
      refused: function (message) { self.refusal = message; },
      close: function () { self.reconnect(); },
    });
    try {
      this.link.open();
    } catch (e) {
      this.reconnect();
    }
  };

  // Exponential backoff with some jitter, so many pages do not come back at the same instant.
  Chat.prototype.reconnect = function () {
    var self = this;
    var wait = Math.min(RETRY_MAX, RETRY_FIRST * Math.pow(2, this.attempt));
    wait = Math.round(wait * (0.8 + Math.random() * 0.4));
    this.attempt++;
    var why = this.refusal ? " (" + this.refusal + ")" : "";
    this.setState("reconnecting", "Reconnecting…" + why);
    clearTimeout(this.retry);
    this.retry = setTimeout(function () { self.connect(); }, wait);
  };

  Chat.prototype.retryNow = function () {
    clearTimeout(this.retry);
    this.connect();
  };

  Chat.prototype.event = function (name, args) {
    if (name === "session_confirm") {
      var id = args[0];
      if (id && typeof id === "object") id = id.session_id;
      this.sessionId = String(id);
      this.save("session", this.sessionId);
      this.attempt = 0;
      this.refusal = null;
      this.setState("connected", "Connected");
      this.flush();
    } else if (name === this.botEvent) {
      this.record({ bot: args[0] });
      this.renderBot(args[0], true);
    }
  };

  // ---- sending ----

  // Sends `text` to the bot and shows `shown` (a button's title) as the user's message.
  Chat.prototype.send = function (text, shown) {
    var bubble = this.bubble("user", shown == null ? text : shown);
    this.record({ user: shown == null ? text : shown });
    this.pending.push([text, bubble]);
    if (this.state === "connected") this.flush();
    else bubble.classList.add("sb-pending");
  };

  Chat.prototype.flush = function () {
    while (this.pending.length) {
      var item = this.pending[0];
      var data = { message: item[0], session_id: this.sessionId };
      if (this.metadata !== undefined) data.customData = this.metadata;
      if (!this.link.emit(this.userEvent, data)) return;
      item[1].classList.remove("sb-pending");
      this.pending.shift();
    }
  };

  // ---- showing messages ----

  Chat.prototype.record = function (entry) {
    this.transcript.push(entry);
    if (this.transcript.length > KEPT) this.transcript.splice(0, this.transcript.length - KEPT);
    this.save("transcript", this.transcript);
  };

  Chat.prototype.restore = function () {
    var t = this.transcript;
    for (var i = 0; i < t.length; i++) {
      if (t[i].user != null) this.bubble("user", String(t[i].user));
      else this.renderBot(t[i].bot, i === t.length - 1);
    }
  };

  Chat.prototype.add = function (node) {
    this.log.append(node);
    this.log.scrollTop = this.log.scrollHeight;
    return node;
  };

  // A message bubble: who said it is read out by screen readers, shown by its style.
  Chat.prototype.bubble = function (who, text) {
    var item = el("div", { "class": "sb-msg sb-" + who });
    item.append(el("span", { "class": "sb-visually-hidden" }, who === "user" ? "You: " : "Bot: "));
    item.append(document.createTextNode(text));
    return this.add(item);
  };

  Chat.prototype.renderBot = function (msg, active) {
    if (typeof msg === "string") { this.bubble("bot", msg); return; }
    if (!msg || typeof msg !== "object") return;
    if (typeof msg.text === "string" && msg.text !== "") this.bubble("bot", msg.text);
    var replies = Array.isArray(msg.quick_replies) ? msg.quick_replies : msg.buttons;
    if (Array.isArray(replies) && replies.length) this.add(this.buttons(replies, active));
    var att = msg.attachment;
    if (!att || typeof att !== "object") return;
    var payload = att.payload || {};
    if (att.type === "image") {
      this.image(payload.src || payload.url);
    } else if (att.type === "template" && payload.template_type === "generic") {
      var elements = Array.isArray(payload.elements) ? payload.elements : [payload.elements];
      for (var i = 0; i < elements.length; i++) {
        if (elements[i] && typeof elements[i] === "object") this.card(elements[i], active);
      }
    } else if (safeUrl(payload.src || payload.url)) {
      var item = el("div", { "class": "sb-msg sb-bot" });
      item.append(el("span", { "class": "sb-visually-hidden" }, "Bot: "));
      item.append(el("a", { href: safeUrl(payload.src || payload.url), target: "_blank",
        rel: "noopener noreferrer" }, "Open the " + (att.type || "attachment")));
      this.add(item);
    }
  };

  Chat.prototype.image = function (src) {
    var url = safeUrl(src, true);
    if (!url) return;
    var item = el("div", { "class": "sb-msg sb-bot sb-image" });
    item.append(el("span", { "class": "sb-visually-hidden" }, "Bot: "));
    var img = el("img", { src: url, alt: "An image from the bot" });
    var self = this;
    img.addEventListener("load", function () { self.log.scrollTop = self.log.scrollHeight; });
    item.append(img);
    this.add(item);
  };

  Chat.prototype.card = function (e, active) {
    var card = el("div", { "class": "sb-msg sb-bot sb-card" });
    card.append(el("span", { "class": "sb-visually-hidden" }, "Bot: "));
    var img = safeUrl(e.image_url, true);
    if (img) card.append(el("img", { src: img, alt: "" }));
    if (e.title) card.append(el("p", { "class": "sb-card-title" }, String(e.title)));
    if (e.subtitle) card.append(el("p", { "class": "sb-card-subtitle" }, String(e.subtitle)));
    if (Array.isArray(e.buttons) && e.buttons.length) card.append(this.buttons(e.buttons, active));
    this.add(card);
  };

  // Buttons and quick replies: a click sends the payload and shows the title. Links open a page.
  Chat.prototype.buttons = function (list, active) {
    var group = el("div", { "class": "sb-buttons", role: "group", "aria-label": "Choices" });
    var self = this;
    list.forEach(function (b) {
      if (!b || typeof b !== "object") return;
      var title = String(b.title != null ? b.title : b.payload != null ? b.payload : "");
      var url = b.type === "web_url" ? safeUrl(b.url) : null;
      if (url) {
        group.append(el("a", { "class": "sb-button", href: url, target: "_blank",
          rel: "noopener noreferrer" }, title));
        return;
      }
      var button = el("button", { type: "button", "class": "sb-button" }, title);
      if (!active) button.disabled = true;
      button.addEventListener("click", function () {
        group.querySelectorAll("button").forEach(function (x) { x.disabled = true; });
        button.classList.add("sb-chosen");
        self.send(String(b.payload != null ? b.payload : title), title);
        self.input.focus();
      });
      group.append(button);
    });
    return group;
  };

  // Forget the conversation: the next session_request asks for a new session.
  Chat.prototype.restart = function () {
    this.sessionId = null;
    this.transcript = [];
    this.save("session", null);
    this.save("transcript", []);
    this.log.textContent = "";
    if (this.link) this.link.shutdown();
    clearTimeout(this.retry);
    this.attempt = 0;
    this.setState("connecting", "Connecting…");
    this.connect();
  };

  function start() {
    var roots = document.querySelectorAll("[data-switchboard-chat]");
    for (var i = 0; i < roots.length; i++) {
      var chat = new Chat(roots[i]);
      if (i === 0) window.switchboardChat = chat;
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
