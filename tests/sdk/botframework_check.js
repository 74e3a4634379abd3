// SPDX-License-Identifier: MIT
// Outside check: Microsoft's npm `botframework-connector` (with `botframework-schema` and MSAL)
// and `jsonwebtoken`, for the bundled botframework channel (test_channel_botframework.py).
//
// Input (stdin, JSON), by command:
//
// {command: "keys", kids: ["k1", ...], endorsements: ["msteams", ...]}: one RSA 2048 key per kid.
//   Output: [{kid, private (PEM), jwk (public: kty, n, e, kid, use "sig", endorsements)}].
//
// {command: "sign", items: [{claims, key (PEM or null for alg none), alg, kid}]}: tokens made by
//   jsonwebtoken.sign (no iat added unless the claims have one). Output: [token].
//
// {command: "validate", openid_url, app_id, cases: [{authorization, serviceUrl, channelId}]}: the
//   SDK's own check of an inbound request (ChannelValidation.authenticateChannelTokenWithServiceUrl,
//   the OpenID metadata and keys fetched from openid_url). Output: ["ok" or the SDK's message].
//
// {command: "send", service_url, login_url, app_id, app_password, conversation_id, activities}:
//   each activity sent with ConnectorClient.conversations.sendToConversation, authenticated by
//   MicrosoftAppCredentials over MSAL; MSAL's token request goes to login_url (its metadata
//   lookups are answered here: MSAL insists on https://login.microsoftonline.com). Output:
//   {sent: n}; the stand-ins record what was sent.
"use strict";
const crypto = require("crypto");
const jwt = require("jsonwebtoken");
const connector = require("botframework-connector");
const { ConfidentialClientApplication } = require("@azure/msal-node");

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", async () => {
  const spec = JSON.parse(input);
  const commands = { keys, sign, validate, send };
  const out = await commands[spec.command](spec);
  process.stdout.write(JSON.stringify(out));
  process.exit(0);
});

async function keys(spec) {
  return spec.kids.map((kid) => {
    const { privateKey, publicKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
    const jwk = publicKey.export({ format: "jwk" });
    return {
      kid,
      private: privateKey.export({ type: "pkcs8", format: "pem" }),
      jwk: { kty: "RSA", use: "sig", kid, n: jwk.n, e: jwk.e, endorsements: spec.endorsements },
    };
  });
}

async function sign(spec) {
  return spec.items.map((item) => {
    const options = { algorithm: item.alg, noTimestamp: true };
    if (item.kid) options.keyid = item.kid;
    return jwt.sign(item.claims, item.key, options);
  });
}

async function validate(spec) {
  connector.ChannelValidation.OpenIdMetadataEndpoint = spec.openid_url;
  const credentials = new connector.SimpleCredentialProvider(spec.app_id, "");
  const verdicts = [];
  const quiet = console.error;
  console.error = () => {}; // the SDK logs every refused token
  for (const c of spec.cases) {
    try {
      await connector.ChannelValidation.authenticateChannelTokenWithServiceUrl(
        c.authorization, credentials, c.serviceUrl, c.channelId);
      verdicts.push("ok");
    } catch (e) {
      verdicts.push(e.message || String(e));
    }
  }
  console.error = quiet;
  return verdicts;
}

// MSAL's network client: its lookups of Microsoft's instance and tenant metadata are answered
// here; the token request goes to the stand-in.
function networkClient(loginUrl) {
  const tenant = "https://login.microsoftonline.com/botframework.com";
  const metadata = {
    token_endpoint: tenant + "/oauth2/v2.0/token",
    authorization_endpoint: tenant + "/oauth2/v2.0/authorize",
    issuer: "https://login.microsoftonline.com/d6d49420-f39b-4df7-a1dc-d59a935871db/v2.0",
    end_session_endpoint: tenant + "/oauth2/v2.0/logout",
    jwks_uri: tenant + "/discovery/v2.0/keys",
    response_types_supported: ["code", "id_token", "code id_token", "id_token token"],
  };
  const json = (body) => ({ headers: {}, status: 200, body });
  return {
    async sendGetRequestAsync(url) {
      if (url.includes("/discovery/instance")) {
        return json({ tenant_discovery_endpoint: tenant + "/v2.0/.well-known/openid-configuration",
          "api-version": "1.1", metadata: [{ preferred_network: "login.microsoftonline.com",
            preferred_cache: "login.windows.net",
            aliases: ["login.microsoftonline.com", "login.windows.net"] }] });
      }
      return json(metadata);
    },
    async sendPostRequestAsync(url, options) {
      const res = await fetch(loginUrl, { method: "POST", headers: options.headers,
        body: options.body });
      const headers = {};
      res.headers.forEach((v, k) => { headers[k] = v; });
      return { headers, status: res.status, body: await res.json() };
    },
  };
}

async function send(spec) {
  const app = new ConfidentialClientApplication({
    auth: { clientId: spec.app_id, clientSecret: spec.app_password,
            authority: "https://login.microsoftonline.com/botframework.com" },
    system: { networkClient: networkClient(spec.login_url) },
  });
  const credentials = new connector.MicrosoftAppCredentials(spec.app_id, spec.app_password);
  credentials.credentials = new connector.MsalAppCredentials(app, spec.app_id, undefined,
    "https://api.botframework.com");
  const client = new connector.ConnectorClient(credentials, { baseUri: spec.service_url });
  for (const activity of spec.activities) {
    await client.conversations.sendToConversation(spec.conversation_id, activity);
  }
  return { sent: spec.activities.length };
}
