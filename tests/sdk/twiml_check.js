// SPDX-License-Identifier: MIT
// Outside check for tests/http/test_channel_twilio_voice.py: the official twilio library signs
// voice webhook calls and builds the TwiML a voice answer should be. Reads JSON from stdin:
//   {"auth_token": "...",
//    "sign": [{"url": "...", "params": {"Name": "value"}}],
//    "twiml": [[verb, ...], ...]}
// where a verb is {"verb": "say", "attrs": {...}, "text": "..."}, {"verb": "pause", "attrs":
// {...}}, {"verb": "hangup"} or {"verb": "gather", "attrs": {...}, "children": [verb, ...]};
// attributes are added in the order the object lists them. Writes one JSON object:
//   {"signatures": ["<X-Twilio-Signature>", ...],
//    "twiml": ["<?xml ...>" or {"error": "..."} when the library refuses the content, ...]}
"use strict";
const twilio = require("twilio");

// Appends `verbs` to `node` (a VoiceResponse or a Gather) with the library's own methods.
function build(node, verbs) {
  for (const v of verbs) {
    if (v.verb === "say") {
      node.say(v.attrs || {}, v.text);
    } else if (v.verb === "pause") {
      node.pause(v.attrs || {});
    } else if (v.verb === "hangup") {
      node.hangup();
    } else if (v.verb === "gather") {
      build(node.gather(v.attrs || {}), v.children || []);
    } else {
      throw new Error("unknown verb " + v.verb);
    }
  }
}

function twiml(verbs) {
  try {
    const response = new twilio.twiml.VoiceResponse();
    build(response, verbs);
    return response.toString();
  } catch (e) {
    return { error: String(e) };
  }
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const { auth_token: token, sign = [], twiml: docs = [] } = JSON.parse(input);
  process.stdout.write(JSON.stringify({
    signatures: sign.map((s) => twilio.getExpectedTwilioSignature(token, s.url, s.params || {})),
    twiml: docs.map(twiml),
  }));
});
