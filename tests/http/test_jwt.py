# SPDX-License-Identifier: MIT
"""sb.jwt through the real binary, against the npm `jsonwebtoken` and `jose` packages
(tests/sdk/jwt_check.js), and the two token caches of switchboard.channel against stand-ins:
util.jwks_cache (fetched once, refetched for an unknown kid at most once per interval, kept as
Cache-Control says, shared through sb.store) and util.oauth_token_cache (one fetch at a time,
kept until shortly before expires_in). docs/lua-api.md, "sb.jwt" and "Helpers for channels".
The RFC 7515 / 7520 vectors and the edge cases are tests/unit/test_jwt.c."""
import base64
import json
import threading
import time
import unittest
import urllib.parse

from channel_fixtures import sdk
from harness import project
from standins import Reply, StandInHostCase, in_threads
from util import QuietHost as Host

CHANNEL = r"""
local sb = require "switchboard"
local util = require "switchboard.channel"
local c = { name = "jwt" }
local caches = {}

function c.init(config)
  c.base = config.base
  caches.rotating = util.jwks_cache(c.base .. "/jwks-rotating", { refetch_interval = 1 })
  caches.age = util.jwks_cache(c.base .. "/jwks-age", { refetch_interval = 0.2 })
  caches.token = util.oauth_token_cache({ token_url = c.base .. "/token", client_id = "cid",
    client_secret = "c s", scope = "s1" })
  caches.short = util.oauth_token_cache({ token_url = c.base .. "/token-short",
    client_id = "cid", client_secret = "cs" })
  caches.basic = util.oauth_token_cache({ token_url = c.base .. "/token-basic",
    client_id = "c:id", client_secret = "s&cret", auth = "basic" })
  caches.fail = util.oauth_token_cache({ token_url = c.base .. "/token-fail",
    client_id = "cid", client_secret = "cs" })
end

-- A new cache object per call: only sb.store links it to the others (as another worker's).
local function fresh_jwks() return util.jwks_cache(c.base .. "/jwks-shared") end
local function fresh_token()
  return util.oauth_token_cache({ token_url = c.base .. "/token-shared", client_id = "cid",
    client_secret = "cs" })
end

c.routes = {
  -- {cases = [{token, opts}]} -> ["ok" or the reason (or "raised: ...")]
  ["POST /verify"] = function(req)
    local out = sb.json.array()
    for i, case in ipairs(req.json.cases) do
      local ok, claims, reason = pcall(sb.jwt.verify, case.token, case.opts)
      out[i] = not ok and ("raised: " .. tostring(claims)) or (claims and "ok" or reason)
    end
    return { json = out }
  end,
  -- {items = [{claims, key, alg, header}]} -> [token]
  ["POST /sign"] = function(req)
    local out = sb.json.array()
    for i, s in ipairs(req.json.items) do
      out[i] = sb.jwt.sign(s.claims, s.key, s.alg, s.header)
    end
    return { json = out }
  end,
  -- {tokens = [...]} -> [{reason, sub}] through a JWK set cache
  ["POST /jwks/{which}"] = function(req)
    local cache = req.params.which == "shared" and fresh_jwks() or caches[req.params.which]
    local out = sb.json.array()
    for i, token in ipairs(req.json.tokens) do
      local claims, reason = cache:verify(token)
      out[i] = { reason = claims and "ok" or reason, sub = claims and claims.sub }
    end
    return { json = out }
  end,
  ["GET /oauth/{which}"] = function(req)
    local cache = req.params.which == "shared" and fresh_token() or caches[req.params.which]
    if req.query.invalidate then cache:invalidate() end
    local token, err = cache:get()
    return { json = { token = token, err = err } }
  end,
}
return c
"""


def b64url_json(value):
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


class NodeTokens(StandInHostCase):
    """Tokens made by jsonwebtoken and jose checked by sb.jwt.verify, and tokens made by
    sb.jwt.sign checked by them."""

    @classmethod
    def start(cls):
        cls.made = sdk("jwt_check.js", {"command": "make"}, timeout=120)
        api = cls.standin(Reply(json={}))
        cls.host = Host(cwd=project({
            "credentials.yml": "jwt.lua:\n  base: %s\n" % api.url(""), "jwt.lua": CHANNEL,
            "endpoints.yml": "server:\n  workers: 2\n"}))

    def opts_for(self, spec):
        """sb.jwt.verify options from a case's key names."""
        keys = self.made["keys"]
        opts = {k: v for k, v in spec.items() if k not in ("secret", "key")}
        if spec.get("secret"):
            opts["secret"] = self.made["secret"]
        key = spec.get("key")
        if key == "jwks":
            opts["key"] = {"keys": [k["jwk"] for k in keys.values() if k["jwk"]]}
        elif key and key.endswith(".jwk"):
            opts["key"] = keys[key[:-4]]["jwk"]
        elif key:
            opts["key"] = keys[key]["public"]
        return opts

    def verify(self, cases):
        status, _, body = self.host.post_json("/webhooks/jwt/verify", {"cases": cases})
        self.assertEqual(status, 200, body)
        return body

    def test_node_tokens_get_the_expected_verdicts(self):
        cases = self.made["cases"]
        got = self.verify([{"token": c["token"], "opts": self.opts_for(c["opts"])}
                           for c in cases])
        self.assertEqual(len(cases), 43)
        self.assertEqual({c["name"]: g for c, g in zip(cases, got)},
                         {c["name"]: c["expect"] for c in cases})

    def test_verdicts_agree_with_jsonwebtoken(self):
        # Where jsonwebtoken checks the same thing, it accepts exactly what sb.jwt accepts. Two
        # cases differ on purpose: jsonwebtoken does not check an iat in the future, and it was
        # given the token's key directly, not the set that lacks its kid.
        differ = {"iat in the future", "jose unknown kid"}
        for case in self.made["cases"]:
            if case["name"] in differ:
                self.assertEqual(case["node"], "ok")
                continue
            self.assertEqual(case["node"] == "ok", case["expect"] == "ok", case)

    def test_changed_tokens_are_refused(self):
        # Every token jsonwebtoken and jose accept, with one character of its header, payload or
        # signature changed, is refused with a reason (not raised).
        good = [c for c in self.made["cases"] if c["expect"] == "ok"]
        cases = []
        for c in good:
            head, body, sig = c["token"].split(".")
            for part in range(3):
                parts = [head, body, sig]
                s = parts[part]
                i = len(s) // 3
                parts[part] = s[:i] + ("B" if s[i] == "A" else "A") + s[i + 1:]
                cases.append({"token": ".".join(parts), "opts": self.opts_for(c["opts"])})
        got = self.verify(cases)
        self.assertEqual(len(got), 3 * len(good))
        for case, reason in zip(cases, got):
            self.assertNotEqual(reason, "ok", case)
            self.assertFalse(reason.startswith("raised"), reason)

    def test_pem_keys_read_once_keep_checking_every_token(self):
        # Keys read from PEM text are kept per Lua state (32 at most, then all dropped): the
        # same key must go on refusing changed tokens, and 40 texts of one key (trailing line
        # breaks make them distinct) drop the kept keys on the way without losing one in use.
        good = next(c for c in self.made["cases"]
                    if c["expect"] == "ok" and c["opts"].get("key") == "rsa")
        opts = self.opts_for(good["opts"])
        head, body, sig = good["token"].split(".")
        changed = head + "." + body + "." + sig[:10] + ("B" if sig[10] == "A" else "A") + sig[11:]
        cases = []
        for i in range(40):
            o = dict(opts, key=opts["key"] + "\n" * i)
            cases += [{"token": good["token"], "opts": o}, {"token": changed, "opts": o}]
        cases.append({"token": good["token"], "opts": dict(opts, key=self.made["keys"]["p256"][
            "public"])})
        got = self.verify(cases * 2)
        for copy in (0, len(cases)):
            for i in range(copy, copy + 80, 2):
                self.assertEqual(got[i], "ok", i)
                self.assertEqual(got[i + 1], "bad signature", i)
            self.assertEqual(got[copy + 80], "algorithm not allowed")

    def test_sign_is_accepted_by_jsonwebtoken_and_jose(self):
        keys = self.made["keys"]
        claims = {"sub": "user-9", "aud": "them", "exp": int(time.time()) + 600, "n": 3,
                  "name": "Zoë"}
        plan = [(alg, "secret") for alg in ("HS256", "HS384", "HS512")]
        plan += [(alg, "rsa") for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")]
        plan += [("ES256", "p256"), ("ES384", "p384"), ("PS256", "pss")]
        items = [{"claims": claims, "alg": alg, "header": {"kid": "k-" + alg},
                  "key": self.made["secret"] if key == "secret" else keys[key]["private"]}
                 for alg, key in plan]
        status, _, tokens = self.host.post_json("/webhooks/jwt/sign", {"items": items})
        self.assertEqual(status, 200, tokens)
        checked = sdk("jwt_check.js", {"command": "check", "keys": dict(keys,
                      secret=self.made["secret"]), "tokens": [
                          {"token": t, "alg": alg, "key": key}
                          for t, (alg, key) in zip(tokens, plan)]})
        for (alg, key), result in zip(plan, checked):
            jose = "not supported" if key == "pss" else "ok"
            self.assertEqual((alg, result["jsonwebtoken"], result["jose"]), (alg, "ok", jose))
            self.assertEqual(result["claims"], claims)
            if key != "pss":
                self.assertEqual(result["jose_claims"], claims)
        # And sb.jwt.verify agrees with itself on them.
        got = self.verify([{"token": t, "opts": self.opts_for(
            {"secret": True} if key == "secret" else {"key": key})}
            for t, (_, key) in zip(tokens, plan)])
        self.assertEqual(got, ["ok"] * len(plan))

    def test_bad_options_raise_and_bad_tokens_do_not(self):
        got = self.verify([
            {"token": "x.y.z", "opts": {"secret": "s", "audience": "x"}},
            {"token": "x.y.z", "opts": {"secret": "s", "leeway": "5"}},
            {"token": "not a token", "opts": {"secret": "s"}},
            {"token": "a" * 70000, "opts": {"secret": "s"}},
            {"token": b64url_json({"alg": "none"}) + "." + b64url_json({"sub": "x"}) + ".",
             "opts": {"secret": "s"}},
        ])
        self.assertRegex(got[0], r"^raised: .*unknown option audience")
        self.assertRegex(got[1], r"^raised: .*opts.leeway must be a number")
        self.assertEqual(got[2:], ["malformed token: not three segments separated by dots",
                                   "malformed token: longer than 65536 bytes",
                                   "algorithm not allowed"])


class Caches(StandInHostCase):
    """util.jwks_cache and util.oauth_token_cache against stand-ins, two workers."""

    @classmethod
    def start(cls):
        cls.made = sdk("jwt_check.js", {"command": "make"}, timeout=120)
        keys = cls.made["keys"]
        cls.set_a = {"keys": [keys["p256"]["jwk"]]}
        cls.set_b = {"keys": [keys["p256"]["jwk"], keys["rsa"]["jwk"]]}
        cls.lock = threading.Lock()
        cls.counts = {}
        cls.api = cls.standin(cls.respond)
        cls.host = Host(cwd=project({
            "credentials.yml": "jwt.lua:\n  base: %s\n" % cls.api.url(""), "jwt.lua": CHANNEL,
            "endpoints.yml": "server:\n  workers: 2\n"}))

    @classmethod
    def respond(cls, rec):
        with cls.lock:
            n = cls.counts[rec.path] = cls.counts.get(rec.path, 0) + 1
        if rec.path == "/jwks-rotating":  # the set gains the RSA key after the first fetch
            return Reply(json=cls.set_a if n == 1 else cls.set_b)
        if rec.path == "/jwks-age":
            return Reply(json=cls.set_b, headers={"Cache-Control": "public, max-age=1"})
        if rec.path == "/jwks-shared":
            return Reply(json=cls.set_b, delay=0.2)
        if rec.path == "/token-fail":
            return Reply(status=401, json={"error": "invalid_client"})
        if rec.path.startswith("/token"):
            lifetime = 2 if rec.path == "/token-short" else 3600
            return Reply(json={"access_token": "%s-%d" % (rec.path[1:], n), "token_type": "Bearer",
                               "expires_in": lifetime}, delay=0.3)
        return Reply(status=404)

    def count(self, path):
        with self.lock:
            return self.counts.get(path, 0)

    def sign(self, key, alg, kid, sub="u"):
        keys = self.made["keys"]
        status, _, tokens = self.host.post_json("/webhooks/jwt/sign", {"items": [{
            "claims": {"sub": sub, "exp": int(time.time()) + 600}, "alg": alg,
            "header": {"kid": kid}, "key": keys[key]["private"]}]})
        self.assertEqual(status, 200, tokens)
        return tokens[0]

    def jwks(self, which, tokens):
        status, _, body = self.host.post_json("/webhooks/jwt/jwks/" + which, {"tokens": tokens})
        self.assertEqual(status, 200, body)
        return [r["reason"] for r in body]

    def oauth(self, which, invalidate=False):
        status, _, body = self.host.request(
            "GET", "/webhooks/jwt/oauth/" + which + ("?invalidate=1" if invalidate else ""))
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def test_jwks_refetch_on_unknown_kid_is_limited(self):
        es = self.sign("p256", "ES256", "ec-256")
        rs = self.sign("rsa", "RS256", "rsa-1")
        self.assertEqual(self.jwks("rotating", [es] * 3), ["ok"] * 3)
        self.assertEqual(self.count("/jwks-rotating"), 1)
        # Within refetch_interval (1 s) of that fetch, a kid the set lacks fetches nothing.
        self.assertEqual(self.jwks("rotating", [rs]), ['unknown kid "rsa-1"'])
        self.assertEqual(self.count("/jwks-rotating"), 1)
        time.sleep(1.1)  # the interval passes
        # Now it fetches once, finds the new key, and a flood of made-up kids (on both workers)
        # fetches nothing more within the interval.
        self.assertEqual(self.jwks("rotating", [rs]), ["ok"])
        self.assertEqual(self.count("/jwks-rotating"), 2)
        flood = [self.sign("p256", "ES256", "made-up-%d" % i) for i in range(5)]
        results = in_threads([lambda: self.jwks("rotating", flood * 4) for _ in range(4)])
        for r in results:
            self.assertEqual(r, ['unknown kid "made-up-%d"' % i for i in range(5)] * 4)
        # Both workers now know the new key: the one that did not fetch takes the set from the
        # store instead of keeping its own copy (requests on new connections reach both).
        for _ in range(8):
            self.assertEqual(self.jwks("rotating", [es, rs]), ["ok", "ok"])
        self.assertEqual(self.count("/jwks-rotating"), 2)

    def test_jwks_max_age_is_honoured(self):
        es = self.sign("p256", "ES256", "ec-256")
        self.assertEqual(self.jwks("age", [es]), ["ok"])
        self.assertEqual(self.jwks("age", [es]), ["ok"])
        self.assertEqual(self.count("/jwks-age"), 1)
        time.sleep(1.2)  # max-age=1 passes
        self.assertEqual(self.jwks("age", [es]), ["ok"])
        self.assertEqual(self.count("/jwks-age"), 2)

    def test_jwks_is_shared_through_the_store(self):
        # Each call makes a new cache object: only sb.store links them, as it links workers.
        es = self.sign("p256", "ES256", "ec-256")
        self.assertEqual(self.jwks("shared", [es]), ["ok"])
        self.assertEqual(self.jwks("shared", [es]), ["ok"])
        self.assertEqual(self.count("/jwks-shared"), 1)

    def test_oauth_token_is_fetched_once_for_concurrent_callers(self):
        results = in_threads([lambda: self.oauth("token") for _ in range(8)])
        self.assertEqual([r["token"] for r in results], ["token-1"] * 8, results)
        self.assertEqual(self.count("/token"), 1)
        rec = [r for r in self.api.snapshot() if r.path == "/token"][0]
        self.assertEqual(rec.method, "POST")
        self.assertEqual(urllib.parse.parse_qs(rec.body.decode()), {
            "grant_type": ["client_credentials"], "client_id": ["cid"],
            "client_secret": ["c s"], "scope": ["s1"]})
        # Kept: later callers get it without a fetch; invalidate fetches another.
        self.assertEqual(self.oauth("token")["token"], "token-1")
        self.assertEqual(self.oauth("token", invalidate=True)["token"], "token-2")
        self.assertEqual(self.count("/token"), 2)

    def test_oauth_separate_objects_share_one_fetch(self):
        results = in_threads([lambda: self.oauth("shared") for _ in range(6)])
        self.assertEqual([r["token"] for r in results], ["token-shared-1"] * 6, results)
        self.assertEqual(self.count("/token-shared"), 1)

    def test_oauth_token_is_refreshed_before_it_expires(self):
        # expires_in 2: kept for 1 s (the 60 s margin is cut to half the lifetime).
        self.assertEqual(self.oauth("short")["token"], "token-short-1")
        self.assertEqual(self.oauth("short")["token"], "token-short-1")
        self.assertEqual(self.count("/token-short"), 1)
        time.sleep(1.1)
        self.assertEqual(self.oauth("short")["token"], "token-short-2")
        self.assertEqual(self.count("/token-short"), 2)

    def test_oauth_basic_auth_and_failure(self):
        self.assertEqual(self.oauth("basic")["token"], "token-basic-1")
        rec = [r for r in self.api.snapshot() if r.path == "/token-basic"][0]
        self.assertEqual(rec.headers["authorization"],
                         "Basic " + base64.b64encode(b"c%3Aid:s%26cret").decode())
        self.assertEqual(urllib.parse.parse_qs(rec.body.decode()),
                         {"grant_type": ["client_credentials"]})
        got = self.oauth("fail")
        self.assertIsNone(got.get("token"))
        self.assertRegex(got["err"], r"token-fail answered HTTP 401 without an access_token")


if __name__ == "__main__":
    unittest.main()
