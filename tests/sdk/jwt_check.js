// SPDX-License-Identifier: MIT
// Outside check: JSON Web Tokens made and checked by the npm `jsonwebtoken` and `jose` packages,
// for sb.jwt (test_jwt.py).
//
// Input (stdin, JSON) {command: "make"}: keys are made here (RSA 2048, an RSA-PSS key, EC P-256
// and P-384, a shared secret) and tokens signed with them, good and bad. Output: {keys, cases}:
// keys = {rsa, pss, p256, p384: {private, public (PEM), jwk (public, with kid)}, secret}; each case
// = {name, token, opts (sb.jwt.verify's options, keys by name: {secret: true} or {key: "rsa"},
// {key: "rsa.jwk"}, {key: "jwks"}), expect (sb.jwt.verify's reason, or "ok"), node (what
// jsonwebtoken.verify said with the same options: "ok" or its message)}.
//
// Input {command: "check", tokens: [{token, alg, key}], keys}: each token (made by sb.jwt.sign)
// checked by jsonwebtoken.verify and jose's jwtVerify with the public key of `key` (a name in
// keys, or "secret"; jose takes no RSA-PSS key: "not supported"). Output: [{jsonwebtoken: "ok" or
// message, claims (decoded by jsonwebtoken), jose: "ok" or message, jose_claims}].
"use strict";
const crypto = require("crypto");
const jwt = require("jsonwebtoken");

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", async () => {
  const spec = JSON.parse(input);
  const jose = await import("jose");
  const out = spec.command === "make" ? await make(jose) : await check(jose, spec);
  process.stdout.write(JSON.stringify(out));
  process.exit(0);
});

function b64url(buf) {
  return Buffer.from(buf).toString("base64url");
}

async function keyPair(jose, type, options, kid) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync(type, options);
  // An RSA-PSS key has no JWK form: it is given as PEM only.
  const jwk = type === "rsa-pss" ? null : { ...(await jose.exportJWK(publicKey)), kid };
  return {
    privateKey, publicKey, jwk,
    private: privateKey.export({ type: "pkcs8", format: "pem" }),
    public: publicKey.export({ type: "spki", format: "pem" }),
  };
}

// What jsonwebtoken says of a token with these options.
function nodeVerdict(token, key, options) {
  try {
    jwt.verify(token, key, options);
    return "ok";
  } catch (e) {
    return e.message;
  }
}

// Change one character of a segment (0 header, 1 payload, 2 signature) to another letter.
function tamper(token, segment) {
  const parts = token.split(".");
  const s = parts[segment];
  const i = Math.floor(s.length / 2);
  parts[segment] = s.slice(0, i) + (s[i] === "A" ? "B" : "A") + s.slice(i + 1);
  return parts.join(".");
}

async function make(jose) {
  const keys = {
    rsa: await keyPair(jose, "rsa", { modulusLength: 2048 }, "rsa-1"),
    pss: await keyPair(jose, "rsa-pss", { modulusLength: 2048, hashAlgorithm: "sha256",
                                         mgf1HashAlgorithm: "sha256", saltLength: 32 }, "pss-1"),
    p256: await keyPair(jose, "ec", { namedCurve: "P-256" }, "ec-256"),
    p384: await keyPair(jose, "ec", { namedCurve: "P-384" }, "ec-384"),
  };
  const secret = crypto.randomBytes(32).toString("hex");
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: "user-1", iss: "https://issuer.example", aud: "switchboard",
                   name: "Zoë", roles: ["a", "b"] };
  const cases = [];
  // opts for sb.jwt.verify; nodeKey and nodeOpts for jsonwebtoken's view of the same check.
  const add = (name, token, opts, expect, nodeKey, nodeOpts) => {
    cases.push({ name, token, opts, expect, node: nodeVerdict(token, nodeKey, nodeOpts || {}) });
  };

  // jsonwebtoken: every algorithm, good.
  for (const alg of ["HS256", "HS384", "HS512"])
    add("jsonwebtoken " + alg, jwt.sign(claims, secret, { algorithm: alg, expiresIn: 600 }),
        { secret: true }, "ok", secret, { algorithms: [alg] });
  for (const alg of ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]) {
    add("jsonwebtoken " + alg, jwt.sign(claims, keys.rsa.private, { algorithm: alg }),
        { key: "rsa" }, "ok", keys.rsa.public);
    add("jsonwebtoken " + alg + " jwk", jwt.sign(claims, keys.rsa.private, { algorithm: alg,
        keyid: "rsa-1" }), { key: "jwks" }, "ok", keys.rsa.public);
  }
  add("jsonwebtoken PS256 rsa-pss key", jwt.sign(claims, keys.pss.private, { algorithm: "PS256" }),
      { key: "pss" }, "ok", keys.pss.public);
  add("jsonwebtoken ES256", jwt.sign(claims, keys.p256.private, { algorithm: "ES256" }),
      { key: "p256" }, "ok", keys.p256.public);
  add("jsonwebtoken ES384", jwt.sign(claims, keys.p384.private, { algorithm: "ES384",
      keyid: "ec-384" }), { key: "jwks" }, "ok", keys.p384.public);

  // Claims.
  const hs = (extra, options) => jwt.sign({ ...claims, ...extra }, secret,
                                          { algorithm: "HS256", ...options });
  add("expired", hs({}, { expiresIn: -100 }), { secret: true }, "expired", secret);
  add("expired within leeway", hs({}, { expiresIn: -100 }), { secret: true, leeway: 200 }, "ok",
      secret, { clockTolerance: 200 });
  add("nbf in the future", hs({}, { notBefore: 300 }), { secret: true }, "not yet valid", secret);
  add("iat in the future", hs({ iat: now + 300 }), { secret: true }, "issued in the future",
      secret);
  add("right aud and iss", hs({}), { secret: true, aud: "switchboard",
      iss: "https://issuer.example" }, "ok", secret,
      { audience: "switchboard", issuer: "https://issuer.example" });
  add("aud list", hs({ aud: ["other", "switchboard"] }), { secret: true, aud: "switchboard" }, "ok",
      secret, { audience: "switchboard" });
  add("wrong aud", hs({}), { secret: true, aud: "someone-else" }, "wrong audience", secret,
      { audience: "someone-else" });
  add("wrong iss", hs({}), { secret: true, iss: "https://evil.example" }, "wrong issuer", secret,
      { issuer: "https://evil.example" });

  // Tampering.
  const good = jwt.sign(claims, keys.rsa.private, { algorithm: "RS256" });
  add("tampered payload", tamper(good, 1), { key: "rsa" }, "bad signature", keys.rsa.public);
  add("tampered signature", tamper(good, 2), { key: "rsa" }, "bad signature", keys.rsa.public);
  const goodEs = jwt.sign(claims, keys.p256.private, { algorithm: "ES256" });
  add("tampered ES signature", tamper(goodEs, 2), { key: "p256" }, "bad signature",
      keys.p256.public);
  add("another key", jwt.sign(claims, crypto.generateKeyPairSync("rsa", { modulusLength: 2048 })
      .privateKey, { algorithm: "RS256" }), { key: "rsa" }, "bad signature", keys.rsa.public);

  // alg none, and an HS token whose secret is the public key (algorithm confusion).
  add("alg none", jwt.sign(claims, null, { algorithm: "none" }), { key: "rsa" },
      "algorithm not allowed", keys.rsa.public);
  add("alg none with a secret", jwt.sign(claims, null, { algorithm: "none" }), { secret: true },
      "algorithm not allowed", secret);
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify(claims));
  const confused = header + "." + body + "." + b64url(crypto.createHmac("sha256", keys.rsa.public)
    .update(header + "." + body).digest());
  add("HS256 signed with the public PEM", confused, { key: "rsa" }, "algorithm not allowed",
      keys.rsa.public);
  add("HS256 signed with the public PEM, HS256 allowed", confused,
      { key: "rsa", algorithms: ["HS256", "RS256"] }, "algorithm does not match the key",
      keys.rsa.public, { algorithms: ["HS256", "RS256"] });
  add("HS256 signed with the public PEM, by kid", confused.replace(/^[^.]*/, b64url(
      JSON.stringify({ alg: "HS256", kid: "rsa-1" }))), { key: "jwks" }, "algorithm not allowed",
      keys.rsa.public);

  // jose: a JWK set selected by kid.
  const joseSign = (alg, key, kid, extra) => new jose.SignJWT({ ...claims, ...extra })
    .setProtectedHeader({ alg, kid }).setIssuedAt().setExpirationTime("10m").sign(key);
  for (const [alg, name] of [["ES256", "p256"], ["ES384", "p384"], ["PS384", "rsa"],
                             ["RS512", "rsa"]])
    add("jose " + alg, await joseSign(alg, keys[name].privateKey, keys[name].jwk.kid),
        { key: "jwks" }, "ok", keys[name].public);
  add("jose ES256 jwk", await joseSign("ES256", keys.p256.privateKey, "ec-256"),
      { key: "p256.jwk" }, "ok", keys.p256.public);
  add("jose unknown kid", await joseSign("ES256", keys.p256.privateKey, "rotated-2"),
      { key: "jwks" }, 'unknown kid "rotated-2"', keys.p256.public);
  add("jose ES256 against the P-384 key", await joseSign("ES256", keys.p256.privateKey, "ec-384"),
      { key: "jwks" }, "algorithm not allowed", keys.p384.public);
  add("jose expired", await new jose.SignJWT(claims).setProtectedHeader({ alg: "ES256",
      kid: "ec-256" }).setExpirationTime(now - 60).sign(keys.p256.privateKey), { key: "jwks" },
      "expired", keys.p256.public);

  const shown = {};
  for (const [name, k] of Object.entries(keys))
    shown[name] = { private: k.private, public: k.public, jwk: k.jwk };
  return { keys: shown, secret, cases };
}

async function check(jose, spec) {
  const results = [];
  for (const t of spec.tokens) {
    const pub = t.key === "secret" ? spec.keys.secret : spec.keys[t.key].public;
    const r = { jsonwebtoken: nodeVerdict(t.token, pub, { algorithms: [t.alg] }),
                claims: jwt.decode(t.token) };
    if (t.key === "pss") { // jose takes no RSA-PSS (id-RSASSA-PSS) keys
      r.jose = "not supported";
      results.push(r);
      continue;
    }
    try {
      const key = t.key === "secret" ? new TextEncoder().encode(pub)
                                     : crypto.createPublicKey(pub);
      const { payload } = await jose.jwtVerify(t.token, key, { algorithms: [t.alg] });
      r.jose = "ok";
      r.jose_claims = payload;
    } catch (e) {
      r.jose = e.message;
    }
    results.push(r);
  }
  return results;
}
