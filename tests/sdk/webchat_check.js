// SPDX-License-Identifier: MIT
// Outside check: the webchat page (channels/webchat/) in a real headless Chromium, driven by
// puppeteer-core, talking to the socketio channel. Keyboard only: type, Enter, Shift+Tab.
// Input (stdin, JSON): {url (the page), chromium (its executable), screenshot (a .png path or
// null), timeout (ms per wait)}.
// Output (stdout, JSON): what the page showed at each step; the Python test asserts on it.
"use strict";
const puppeteer = require("puppeteer-core");

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  run(JSON.parse(input)).then(
    (got) => { process.stdout.write(JSON.stringify(got)); process.exit(0); },
    (err) => { process.stderr.write(String(err && err.stack || err) + "\n"); process.exit(1); });
});

// What the log shows: one entry per bubble or button group, as the user sees it.
function transcript(page) {
  return page.$$eval(".sb-log > *", (nodes) => nodes.map((n) => {
    if (n.classList.contains("sb-buttons")) {
      return { buttons: [...n.querySelectorAll("button")].map((b) => b.textContent) };
    }
    const img = n.querySelector("img");
    if (img) return { image: img.naturalWidth > 0, alt: img.alt };
    return { [n.classList.contains("sb-user") ? "user" : "bot"]:
             n.textContent.replace(/^(You|Bot): /, "") };
  }));
}

async function run(spec) {
  const timeout = spec.timeout || 10000;
  const got = { steps: {} };
  const browser = await puppeteer.launch({
    executablePath: spec.chromium, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
    defaultViewport: { width: 800, height: 600 },
  });
  try {
    const page = await browser.newPage();
    got.console = [];
    page.on("console", (m) => { if (m.type() === "error") got.console.push(m.text()); });
    page.on("pageerror", (e) => got.console.push(String(e)));
    const connected = () => page.waitForSelector('[data-switchboard-chat][data-state="connected"]',
                                                 { timeout });
    const count = () => page.$$eval(".sb-log > *", (n) => n.length);
    const waitCount = (n) => page.waitForFunction(
      (k) => document.querySelectorAll(".sb-log > *").length >= k, { timeout, polling: "mutation" }, n);
    const focused = () => page.evaluate(() => document.activeElement &&
                                        document.activeElement.id);
    const say = async (text) => { await page.keyboard.type(text); await page.keyboard.press("Enter"); };

    const response = await page.goto(spec.url, { waitUntil: "load", timeout });
    got.status = response.status();
    got.headers = { type: response.headers()["content-type"],
                    cache: response.headers()["cache-control"] };
    await connected();
    got.a11y = await page.evaluate(() => {
      const log = document.querySelector('[role="log"]');
      const input = document.querySelector(".sb-form input");
      const label = input && document.querySelector('label[for="' + input.id + '"]');
      return { main: !!document.querySelector("main [role=log]"),
               live: log && log.getAttribute("aria-live"),
               label: label && label.textContent,
               status: document.querySelector('[role="status"]').textContent };
    });
    got.session = await page.evaluate(() => localStorage.getItem("switchboard-chat:session"));
    got.steps.focus_at_start = await focused();

    // Text in, text and buttons out.
    await say("buttons");
    await waitCount(3);
    got.steps.buttons = await transcript(page);
    got.steps.focus_after_typing = await focused();

    // Keyboard to the first button (Shift+Tab from the input: "No", then "Yes"), Enter.
    await page.keyboard.down("Shift");
    await page.keyboard.press("Tab");
    await page.keyboard.press("Tab");
    await page.keyboard.up("Shift");
    got.steps.focused_button = await page.evaluate(() => document.activeElement.textContent);
    await page.keyboard.press("Enter");
    await waitCount(5);
    got.steps.clicked = await transcript(page);
    got.steps.focus_after_click = await focused();
    got.steps.disabled_after_click = await page.$$eval(".sb-buttons button",
                                                       (b) => b.map((x) => x.disabled));

    // An image.
    await say("image");
    await waitCount(8);
    await page.waitForFunction(() => { const i = document.querySelector(".sb-log img");
                                       return i && i.complete && i.naturalWidth > 0; },
                               { timeout });
    got.steps.image = await transcript(page);
    if (spec.screenshot) await page.screenshot({ path: spec.screenshot });

    // A reload keeps the session and shows the conversation so far.
    const before = await count();
    await page.reload({ waitUntil: "load", timeout });
    await connected();
    got.session_after_reload = await page.evaluate(
      () => localStorage.getItem("switchboard-chat:session"));
    got.steps.restored = await count() === before;
    got.steps.focus_after_reload = await focused();
    await say("again");
    await waitCount(before + 2);
    got.steps.after_reload = (await transcript(page)).slice(before);

    // The server closes the WebSocket: the page's client sends Engine.IO's close packet on the
    // raw socket, so the server ends the connection; the page sees it lost and reconnects.
    const states = page.evaluate(() => new Promise((resolve) => {
      const root = document.querySelector("[data-switchboard-chat]");
      const seen = [];
      new MutationObserver(() => {
        seen.push(root.getAttribute("data-state") + ": " +
                  root.querySelector('[role="status"]').textContent);
        if (root.getAttribute("data-state") === "connected") resolve(seen);
      }).observe(root, { attributes: true, subtree: true, childList: true, characterData: true });
    }));
    const oldSocket = await page.evaluate(() => { window.oldWs = switchboardChat.link.ws;
                                                  switchboardChat.link.ws.send("1"); return true; });
    got.steps.reconnect_states = await Promise.race([
      states, new Promise((_, reject) => setTimeout(() => reject(new Error("no reconnect")), timeout))]);
    got.steps.new_socket = oldSocket && await page.evaluate(
      () => window.oldWs !== switchboardChat.link.ws && window.oldWs.readyState === 3);
    got.session_after_reconnect = await page.evaluate(() => switchboardChat.sessionId);
    const n = await count();
    await say("after");
    await waitCount(n + 2);
    got.steps.after_reconnect = (await transcript(page)).slice(n);
    got.final_state = await page.evaluate(() => document.querySelector(".sb-status").textContent);
  } finally {
    await browser.close();
  }
  return got;
}
