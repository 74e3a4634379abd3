/* SPDX-License-Identifier: MIT */
/* Unit tests of sb.jwt (docs/lua-api.md, "sb.jwt"): the RFC 7515 Appendix A tokens (A.1 HS256,
 * A.2 RS256, A.3 ES256) and the RFC 7520 §4 signatures (RS256, PS384, HS256 with its JWKs, as a
 * JWK set selected by kid), keys made here with OpenSSL (RSA 2048, RSA-PSS, P-256, P-384) for
 * sign/verify round trips, the claim checks, algorithm confusion, malformed tokens and misuse.
 * Each case is a Lua expression that must be true, run in a plain state holding sb.jwt, sb.json
 * and the crypto helpers. The Node libraries' view of the same tokens is tests/http/test_jwt.py. */
#include "../../src/lua_crypto.h"
#include "../../src/lua_json.h"
#include "../../src/lua_jwt.h"
#include "check.h"

#include <lauxlib.h>
#include <lualib.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

static lua_State *L;

#define CHECK_LUA(expr) check_lua(__FILE__, __LINE__, (expr))

static void check_lua(const char *file, int line, const char *expr)
{
    check_count++;
    lua_settop(L, 0);
    lua_pushfstring(L, "return %s", expr);
    if (luaL_loadstring(L, lua_tostring(L, -1)) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        check_failures++;
        fprintf(stderr, "%s:%d: %s raised: %s\n", file, line, expr, lua_tostring(L, -1));
        return;
    }
    if (!lua_toboolean(L, -1)) {
        check_failures++;
        fprintf(stderr, "%s:%d: check failed: %s\n", file, line, expr);
    }
}

static void run_lua(const char *code)
{
    if (luaL_dostring(L, code) != LUA_OK) {
        fprintf(stderr, "test_jwt: %s\n", lua_tostring(L, -1));
        check_failures++;
    }
}

/* Helpers the checks share: base64url, a reason as text, changing one character. */
static const char *const prelude =
    "function b64url(s) return (sb.base64(s):gsub('=', ''):gsub('+', '-'):gsub('/', '_')) end\n"
    "function unb64url(s) return sb.base64_decode(s) end\n"
    /* verify's second result: the reason when it refused, 'ok' when it accepted */
    "function why(token, opts)\n"
    "  local claims, reason = sb.jwt.verify(token, opts)\n"
    "  if claims then return 'ok' end\n"
    "  return reason\n"
    "end\n"
    /* the token with the character at i (negative: from the end) changed to another letter */
    "function flip(token, i)\n"
    "  if i < 0 then i = #token + 1 + i end\n"
    "  local c = token:sub(i, i)\n"
    "  return token:sub(1, i - 1) .. (c == 'A' and 'B' or 'A') .. token:sub(i + 1)\n"
    "end\n"
    /* a token with the given header and claims (tables or raw text) and signature bytes */
    "function forge(header, claims, sig)\n"
    "  local h = type(header) == 'table' and sb.json.encode(header) or header\n"
    "  local c = type(claims) == 'table' and sb.json.encode(claims) or claims\n"
    "  return b64url(h) .. '.' .. b64url(c) .. '.' .. b64url(sig or '')\n"
    "end\n"
    /* an HS token signed with `secret` however it looks (sign refuses PEM secrets) */
    "function hs(header, claims, secret, bits)\n"
    "  local input = b64url(sb.json.encode(header)) .. '.' .. b64url(sb.json.encode(claims))\n"
    "  return input .. '.' .. b64url(sb.hmac('sha' .. (bits or 256), secret, input))\n"
    "end\n"
    "function raises(f, ...)\n"
    "  local ok, err = pcall(f, ...)\n"
    "  return not ok and tostring(err) or false\n"
    "end\n";

/* RFC 7515 Appendix A. */
static const char *const rfc7515 =
    "A_PAYLOAD = 'eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9p"
    "c19yb290Ijp0cnVlfQ'\n"
    "A1 = 'eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.' .. A_PAYLOAD .. "
    "'.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'\n"
    "A1_KEY = {kty = 'oct', k = 'AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0i"
    "PS4hcgUuTwjAzZr1Z9CAow'}\n"
    "A2 = 'eyJhbGciOiJSUzI1NiJ9.' .. A_PAYLOAD .. '.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2Vt"
    "Qgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFd"
    "iuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzD"
    "wusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmt"
    "VrBp0igcN_IoypGlUPQGe77Rw'\n"
    "A2_KEY = {kty = 'RSA', e = 'AQAB', n = 'ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W2"
    "6mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47"
    "soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMT"
    "BQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDT"
    "W9gb54h4FRWyuXpoQ'}\n"
    "A3 = 'eyJhbGciOiJFUzI1NiJ9.' .. A_PAYLOAD .. '.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFC"
    "gfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q'\n"
    "A3_KEY = {kty = 'EC', crv = 'P-256', x = 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU',"
    " y = 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0'}\n"
    "A_NOW = 1300819000\n";

/* RFC 7520 §3.3 (the RSA public key), §3.5 (the HMAC key) and §4.1, §4.2, §4.4: their payload
 * is text, not a JSON object, so a token whose signature verifies is refused only after it. */
static const char *const rfc7520 =
    "C_PAYLOAD = 'SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gW"
    "W91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vI"
    "Gtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4'\n"
    "C_RSA = {kty = 'RSA', kid = 'bilbo.baggins@hobbiton.example', use = 'sig', e = 'AQAB',"
    " n = 'n4EPtAOCc9AlkeQHPzHStgAbgs7bTZLwUBZdR8_KuKPEHLd4rHVTeT-O-XV2jRojdNhxJWTDvNd7nqQ0VEiZQ"
    "Hz_AJmSCpMaJMRBSFKrKb2wqVwGU_NsYOYL-QtiWN2lbzcEe6XC0dApr5ydQLrHqkHHig3RBordaZ6Aj-oBHqFEHYpP"
    "e7Tpe-OfVfHd1E6cS6M1FZcD1NNLYD5lFHpPI9bTwJlsde3uhGqC0ZCuEHg8lhzwOHrtIQbS0FVbb9k3-tVTU4fg_3L"
    "_vniUFAKwuCLqKnS2BYwdq_mzSnbLY7h_qixoR7jig3__kRhuaxwUkRz5iaiQkqgc5gHdrNP5zw'}\n"
    "C_OCT = {kty = 'oct', kid = '018c0ae5-4d9b-471b-bfd6-eef314bc7037', use = 'sig',"
    " alg = 'HS256', k = 'hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg'}\n"
    "C41 = 'eyJhbGciOiJSUzI1NiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9.' .. "
    "C_PAYLOAD .. '.MRjdkly7_-oTPTS3AXP41iQIGKa80A0ZmTuV5MEaHoxnW2e5CZ5NlKtainoFmKZopdHM1O2U4mwz"
    "JdQx996ivp83xuglII7PNDi84wnB-BDkoBwA78185hX-Es4JIwmDLJK3lfWRa-XtL0RnltuYv746iYTh_qHRD68BNt1u"
    "SNCrUCTJDt5aAE6x8wW1Kt9eRo4QPocSadnHXFxnt8Is9UzpERV0ePPQdLuW3IS_de3xyIrDaLGdjluPxUAhb6L2aXic"
    "1U12podGU0KLUQSE_oI-ZnmKJ3F4uOZDnd6QZWJushZ41Axf_fcIe8u9ipH84ogoree7vjbU5y18kDquDg'\n"
    "C42 = 'eyJhbGciOiJQUzM4NCIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9.' .. "
    "C_PAYLOAD .. '.cu22eBqkYDKgIlTpzDXGvaFfz6WGoz7fUDcfT0kkOy42miAh2qyBzk1xEsnk2IpN6-tPid6VrklH"
    "kqsGqDqHCdP6O8TTB5dDDItllVo6_1OLPpcbUrhiUSMxbbXUvdvWXzg-UD8biiReQFlfz28zGWVsdiNAUf8ZnyPEgVFn"
    "442ZdNqiVJRmBqrYRXe8P_ijQ7p8Vdz0TTrxUeT3lm8d9shnr2lfJT8ImUjvAA2Xez2Mlp8cBE5awDzT0qI0n6uiP1aC"
    "N_2_jLAeQTlqRHtfa64QQSUmFAAjVKPbByi7xho0uTOcbH510a6GYmJUAfmWjwZ6oD4ifKo8DYM-X72Eaw'\n"
    "C44 = 'eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxOGMwYWU1LTRkOWItNDcxYi1iZmQ2LWVlZjMxNGJjNzAzNyJ9.' .. "
    "C_PAYLOAD .. '.s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1Md7p0'\n"
    "C_SET = {keys = {C_OCT, C_RSA}}\n"
    "NOT_JSON = 'malformed token: the payload is not a JSON object'\n";

static void test_rfc7515(void)
{
    /* A.1: HS256 with the JWK as a table and as JSON text; the claims and header come back. */
    CHECK_LUA("why(A1, {key = A1_KEY, now = A_NOW}) == 'ok'");
    CHECK_LUA("why(A1, {key = sb.json.encode(A1_KEY), now = A_NOW}) == 'ok'");
    CHECK_LUA("why(A1, {secret = unb64url(A1_KEY.k), now = A_NOW}) == 'ok'");
    CHECK_LUA("(function() local c, h = sb.jwt.verify(A1, {key = A1_KEY, now = A_NOW})\n"
              "  return c.iss == 'joe' and c.exp == 1300819380 and math.type(c.exp) == 'integer'\n"
              "    and c['http://example.com/is_root'] == true and h.typ == 'JWT'\n"
              "    and h.alg == 'HS256' end)()");
    /* A.2: RS256; A.3: ES256 (the signature is JOSE's r || s). */
    CHECK_LUA("why(A2, {key = A2_KEY, now = A_NOW}) == 'ok'");
    CHECK_LUA("why(A3, {key = A3_KEY, now = A_NOW}) == 'ok'");
    CHECK_LUA("why(A3, {key = {keys = {A2_KEY, A3_KEY}}, now = A_NOW}) == 'ok'");
    /* One character changed in the header, payload or signature. */
    CHECK_LUA("why(flip(A1, 30), {key = A1_KEY, now = A_NOW}) ~= 'ok'");
    CHECK_LUA("why(flip(A1, 60), {key = A1_KEY, now = A_NOW}) == 'bad signature'");
    CHECK_LUA("why(flip(A1, -5), {key = A1_KEY, now = A_NOW}) == 'bad signature'");
    CHECK_LUA("why(flip(A2, 60), {key = A2_KEY, now = A_NOW}) == 'bad signature'");
    CHECK_LUA("why(flip(A2, -10), {key = A2_KEY, now = A_NOW}) == 'bad signature'");
    CHECK_LUA("why(flip(A3, 60), {key = A3_KEY, now = A_NOW}) == 'bad signature'");
    CHECK_LUA("why(flip(A3, -10), {key = A3_KEY, now = A_NOW}) == 'bad signature'");
    /* An ES signature must be exactly 64 bytes: DER, or one byte more or less, is refused. */
    CHECK_LUA("(function() local head = A3:match('^(.*)%.')\n"
              "  local raw = unb64url(A3:match('[^.]*$'))\n"
              "  return why(head .. '.' .. b64url(raw .. '\\0'), {key = A3_KEY, now = A_NOW})\n"
              "      == 'bad signature'\n"
              "    and why(head .. '.' .. b64url(raw:sub(2)), {key = A3_KEY, now = A_NOW})\n"
              "      == 'bad signature' end)()");
    /* The exp of the example is 1300819380. */
    CHECK_LUA("why(A1, {key = A1_KEY, now = 1300819380}) == 'expired'");
    CHECK_LUA("why(A1, {key = A1_KEY, now = 1300819389, leeway = 10}) == 'ok'");
    CHECK_LUA("why(A1, {key = A1_KEY, now = 1300819390, leeway = 10}) == 'expired'");
    CHECK_LUA("why(A2, {key = A2_KEY}) == 'expired'");
    /* A key of another kind: the defaults come from the key; a list that allows it still does
     * not let an RSA key check an ES token. */
    CHECK_LUA("why(A3, {key = A2_KEY, now = A_NOW}) == 'algorithm not allowed'");
    CHECK_LUA("why(A3, {key = A2_KEY, now = A_NOW, algorithms = {'ES256', 'RS256'}}) == "
              "'algorithm does not match the key'");
    CHECK_LUA("why(A2, {key = A2_KEY, now = A_NOW, algorithms = 'RS512'}) == "
              "'algorithm not allowed'");
    CHECK_LUA("why(A2, {key = A2_KEY, now = A_NOW, algorithms = {'PS256', 'RS256'}}) == 'ok'");
    /* A JWK naming its alg, use or key_ops limits what it checks. */
    CHECK_LUA("(function() local k = {alg = 'RS512'} for n, v in pairs(A2_KEY) do k[n] = v end\n"
              "  return why(A2, {key = k, now = A_NOW}) == 'algorithm not allowed' end)()");
    CHECK_LUA("(function() local k = {use = 'enc'} for n, v in pairs(A2_KEY) do k[n] = v end\n"
              "  return why(A2, {key = k, now = A_NOW}) == 'algorithm not allowed' end)()");
    CHECK_LUA("(function() local k = {key_ops = {'encrypt'}} for n, v in pairs(A3_KEY) do\n"
              "  k[n] = v end return why(A3, {key = k, now = A_NOW}) == 'algorithm not allowed'\n"
              "  end)()");
    CHECK_LUA("(function() local k = {key_ops = {'verify'}} for n, v in pairs(A3_KEY) do\n"
              "  k[n] = v end return why(A3, {key = k, now = A_NOW}) == 'ok' end)()");
}

static void test_rfc7520(void)
{
    CHECK_LUA("why(C41, {key = C_SET}) == NOT_JSON");
    CHECK_LUA("why(C41, {key = C_RSA}) == NOT_JSON");
    CHECK_LUA("why(C42, {key = C_SET}) == NOT_JSON");
    CHECK_LUA("why(C44, {key = C_SET}) == NOT_JSON");
    CHECK_LUA("why(C44, {key = sb.json.encode(C_SET)}) == NOT_JSON");
    CHECK_LUA("why(flip(C41, -3), {key = C_SET}) == 'bad signature'");
    CHECK_LUA("why(flip(C42, -3), {key = C_SET}) == 'bad signature'");
    CHECK_LUA("why(flip(C44, -3), {key = C_SET}) == 'bad signature'");
    CHECK_LUA("why(flip(C41, 150), {key = C_SET}) == 'bad signature'");
    /* The oct key names HS256: it does not check HS512, even when listed. */
    CHECK_LUA("why(C44:gsub('^[^.]*', b64url('{\"alg\":\"HS512\",\"kid\":\"' .. C_OCT.kid .. "
              "'\"}')), {key = C_SET, algorithms = {'HS512'}}) == "
              "'algorithm does not match the key'");
    /* A kid the set lacks: a reason callers can tell apart (and refetch the set). */
    CHECK_LUA("why(C41, {key = {keys = {C_OCT}}}) == 'unknown kid \"bilbo.baggins@hobbiton.example\"'");
    CHECK_LUA("why(C41, {key = {keys = {}}}):find('^unknown kid') ~= nil");
    CHECK_LUA("why(forge({alg = 'RS256', kid = ('x'):rep(500) .. '\\n'}, {}, 'sig'), "
              "{key = C_SET}) == 'unknown kid \"' .. ('x'):rep(64) .. '...\"'");
    /* No kid: the one key of the set that fits is used; none, or two, is a reason. */
    CHECK_LUA("why(A2, {key = {keys = {A3_KEY, A2_KEY, C_OCT}}, now = A_NOW}) == 'ok'");
    CHECK_LUA("why(A2, {key = {keys = {A3_KEY}}, now = A_NOW}):find('^unknown kid %(') ~= nil");
    CHECK_LUA("why(A2, {key = {keys = {A2_KEY, C_RSA}}, now = A_NOW}):find('^ambiguous key') "
              "~= nil");
    /* Keys the host cannot use are skipped; one with the token's kid is named. */
    CHECK_LUA("why(A3, {key = {keys = {{kty = 'OKP', crv = 'Ed25519', x = 'AA'}, A3_KEY, "
              "{kty = 'EC'}}}, now = A_NOW}) == 'ok'");
    CHECK_LUA("why(C41, {key = {keys = {{kty = 'RSA', kid = C_RSA.kid, n = 'AQAB', e = 'AQAB'}"
              "}}}) == 'unusable key: an RSA key shorter than 2048 bits'");
    CHECK_LUA("why(C41, {key = {keys = {{kty = 'RSA', kid = C_RSA.kid, n = 'AQAB', e = 'AQAB'},"
              " C_RSA}}}) == NOT_JSON");
    /* ES512 (P-521) is not implemented: refused as any unknown algorithm. */
    CHECK_LUA("why(forge({alg = 'ES512'}, {}, ('x'):rep(132)), {key = C_SET}) == "
              "'algorithm not allowed'");
}

/* Keys made here, as PEM text in the globals RSA, RSA_PUB, PSS, PSS_PUB, P256, P256_PUB, P384,
 * P384_PUB, SMALL_RSA_PUB. */
/* private_key: 0 SPKI, 1 PKCS#8, 2 the traditional private form ("RSA PRIVATE KEY",
 * "EC PRIVATE KEY"), 3 PKCS#1 "RSA PUBLIC KEY". */
static void set_pem_global(const char *name, EVP_PKEY *pkey, int private_key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int ok;
    if (private_key == 3) {
        OSSL_ENCODER_CTX *ectx = OSSL_ENCODER_CTX_new_for_pkey(pkey, EVP_PKEY_PUBLIC_KEY, "PEM",
                                                               "type-specific", NULL);
        ok = ectx && OSSL_ENCODER_to_bio(ectx, bio);
        OSSL_ENCODER_CTX_free(ectx);
    } else if (private_key == 2) {
        ok = PEM_write_bio_PrivateKey_traditional(bio, pkey, NULL, NULL, 0, NULL, NULL);
    } else {
        ok = private_key ? PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL)
                         : PEM_write_bio_PUBKEY(bio, pkey);
    }
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    if (!ok || len <= 0) {
        fprintf(stderr, "test_jwt: cannot write the PEM of %s\n", name);
        check_failures++;
    }
    lua_pushlstring(L, data, (size_t)(len > 0 ? len : 0));
    lua_setglobal(L, name);
    BIO_free(bio);
}

static void make_keys(void)
{
    static const struct { const char *name; const char *type; const char *arg; } specs[] = {
        {"RSA", "RSA", NULL}, {"PSS", "RSA-PSS", NULL}, {"P256", "EC", "P-256"},
        {"P384", "EC", "P-384"}, {"SMALL_RSA", "RSA", NULL},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        EVP_PKEY *pkey = NULL;
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, specs[i].type, NULL);
        int bits = strcmp(specs[i].name, "SMALL_RSA") ? 2048 : 1024;
        if (!ctx || EVP_PKEY_keygen_init(ctx) != 1 ||
            (specs[i].arg ? EVP_PKEY_CTX_set_group_name(ctx, specs[i].arg)
                          : EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, bits)) != 1 ||
            EVP_PKEY_generate(ctx, &pkey) != 1)
            pkey = NULL;
        EVP_PKEY_CTX_free(ctx);
        if (!pkey) {
            fprintf(stderr, "test_jwt: cannot make the %s key\n", specs[i].name);
            check_failures++;
            continue;
        }
        char pub[32];
        snprintf(pub, sizeof pub, "%s_PUB", specs[i].name);
        set_pem_global(specs[i].name, pkey, 1);
        set_pem_global(pub, pkey, 0);
        if (strcmp(specs[i].name, "RSA") == 0) {
            set_pem_global("RSA_TRADITIONAL", pkey, 2);
            set_pem_global("RSA_PKCS1_PUB", pkey, 3);
        } else if (strcmp(specs[i].name, "P256") == 0) {
            set_pem_global("P256_TRADITIONAL", pkey, 2);
        }
        EVP_PKEY_free(pkey);
    }
}

static void test_sign_round_trips(void)
{
    run_lua("CLAIMS = {sub = 'u1', n = 7, list = {1, 2}, name = 'Zoë'}\n"
            "function round(alg, key, pub)\n"
            "  local token = sb.jwt.sign(CLAIMS, key, alg, {kid = 'k1'})\n"
            "  local c, h = sb.jwt.verify(token, {key = pub, secret = pub == nil and key or nil})\n"
            "  if not c then return false, h end\n"
            "  return c.sub == 'u1' and c.n == 7 and c.list[2] == 2 and c.name == 'Zoë'\n"
            "    and h.alg == alg and h.kid == 'k1' and h.typ == 'JWT'\n"
            "end\n");
    CHECK_LUA("round('HS256', 'secret') and round('HS384', 'secret') and round('HS512', 's')");
    CHECK_LUA("round('RS256', RSA, RSA_PUB) and round('RS384', RSA, RSA_PUB) "
              "and round('RS512', RSA, RSA_PUB)");
    CHECK_LUA("round('PS256', RSA, RSA_PUB) and round('PS384', RSA, RSA_PUB) "
              "and round('PS512', RSA, RSA_PUB)");
    CHECK_LUA("round('PS256', PSS, PSS_PUB)");
    /* The traditional PEM forms: "RSA PRIVATE KEY", "EC PRIVATE KEY", "RSA PUBLIC KEY". */
    CHECK_LUA("RSA_TRADITIONAL:find('BEGIN RSA PRIVATE KEY', 1, true) and "
              "RSA_PKCS1_PUB:find('BEGIN RSA PUBLIC KEY', 1, true) and "
              "P256_TRADITIONAL:find('BEGIN EC PRIVATE KEY', 1, true)");
    CHECK_LUA("round('RS256', RSA_TRADITIONAL, RSA_PKCS1_PUB) and round('PS384', RSA, "
              "RSA_PKCS1_PUB) and round('ES256', P256_TRADITIONAL, P256_PUB)");
    CHECK_LUA("round('ES256', P256, P256_PUB) and round('ES384', P384, P384_PUB)");
    /* A private key checks what it signed too. */
    CHECK_LUA("round('ES256', P256, P256) and round('RS256', RSA, RSA)");
    /* The header is JSON with sorted keys; typ may be replaced; the alg argument wins. */
    CHECK_LUA("unb64url(sb.jwt.sign({}, 's', 'HS256'):match('^[^.]*')) == "
              "'{\"alg\":\"HS256\",\"typ\":\"JWT\"}'");
    CHECK_LUA("unb64url(sb.jwt.sign({a = 1}, 's', 'HS256', {alg = 'none', typ = 'at+jwt'})"
              ":match('^[^.]*')) == '{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}'");
    CHECK_LUA("unb64url(sb.jwt.sign({a = 1}, 's', 'HS256'):match('%.(.*)%.')) == '{\"a\":1}'");
    /* ES signatures are 64 and 96 bytes (r || s), whatever the DER length. */
    CHECK_LUA("(function() for i = 1, 20 do\n"
              "  if #unb64url(sb.jwt.sign({i = i}, P256, 'ES256'):match('[^.]*$')) ~= 64 or\n"
              "     #unb64url(sb.jwt.sign({i = i}, P384, 'ES384'):match('[^.]*$')) ~= 96 then\n"
              "    return false end end return true end)()");
    /* Keys of another kind or curve. */
    CHECK_LUA("why(sb.jwt.sign(CLAIMS, P256, 'ES256'), {key = P384_PUB}) == "
              "'algorithm not allowed'");
    CHECK_LUA("why(sb.jwt.sign(CLAIMS, RSA, 'RS256'), {key = P256_PUB}) == "
              "'algorithm not allowed'");
    CHECK_LUA("why(sb.jwt.sign(CLAIMS, RSA, 'RS256'), {key = PSS_PUB}) == "
              "'algorithm not allowed'");
    CHECK_LUA("why(sb.jwt.sign(CLAIMS, PSS, 'PS384'), {key = RSA_PUB}) == 'bad signature'");
    CHECK_LUA("why(sb.jwt.sign(CLAIMS, 'one', 'HS256'), {secret = 'two'}) == 'bad signature'");
    /* A key shorter than 2048 bits is refused, for signing and for checking. */
    CHECK_LUA("raises(sb.jwt.sign, CLAIMS, SMALL_RSA, 'RS256'):find('shorter than 2048') ~= nil");
    CHECK_LUA("raises(sb.jwt.verify, 'a.b.c', {key = SMALL_RSA_PUB}) == false");
    CHECK_LUA("raises(sb.jwt.verify, sb.jwt.sign(CLAIMS, RSA, 'RS256'), {key = SMALL_RSA_PUB})"
              ":find('shorter than 2048') ~= nil");
}

static void test_confusion(void)
{
    /* alg none, with or without a signature, whatever the key or the list. */
    CHECK_LUA("why(forge({alg = 'none'}, {sub = 'x'}), {secret = 's'}) == "
              "'algorithm not allowed'");
    CHECK_LUA("why(forge({alg = 'none'}, {sub = 'x'}), {key = RSA_PUB}) == "
              "'algorithm not allowed'");
    CHECK_LUA("why(forge({alg = 'None'}, {sub = 'x'}), {key = RSA_PUB}) == "
              "'algorithm not allowed'");
    CHECK_LUA("raises(sb.jwt.verify, 'a.b.c', {secret = 's', algorithms = {'none'}})"
              ":find(\"unsupported algorithm 'none'\") ~= nil");
    /* HS tokens whose secret is the public key's PEM (or its JWK's n) never verify. */
    CHECK_LUA("why(hs({alg = 'HS256'}, {sub = 'x'}, RSA_PUB), {key = RSA_PUB}) == "
              "'algorithm not allowed'");
    CHECK_LUA("why(hs({alg = 'HS256'}, {sub = 'x'}, RSA_PUB), {key = RSA_PUB, "
              "algorithms = {'HS256', 'RS256'}}) == 'algorithm does not match the key'");
    CHECK_LUA("why(hs({alg = 'HS256'}, {sub = 'x'}, P256_PUB), {key = P256_PUB}) == "
              "'algorithm not allowed'");
    CHECK_LUA("why(hs({alg = 'HS256'}, {}, unb64url(A2_KEY.n)), {key = A2_KEY}) == "
              "'algorithm not allowed'");
    CHECK_LUA("why(hs({alg = 'HS256'}, {}, unb64url(A2_KEY.n)), {key = {keys = {A2_KEY}}}) "
              ":find('^unknown kid') ~= nil");
    /* A PEM given as the secret is refused before any token is looked at. */
    CHECK_LUA("raises(sb.jwt.verify, 'x', {secret = RSA_PUB}):find('opts.secret is a PEM key') "
              "~= nil");
    CHECK_LUA("raises(sb.jwt.sign, {}, RSA_PUB, 'HS256'):find('not a PEM key') ~= nil");
    /* An RSA token checked with a secret. */
    CHECK_LUA("why(sb.jwt.sign({}, RSA, 'RS256'), {secret = RSA_PUB:sub(30)}) == "
              "'algorithm not allowed'");
    /* A JWK whose kty does not fit the token's alg. */
    CHECK_LUA("why(A2, {key = A3_KEY, now = A_NOW, algorithms = {'RS256'}}) == "
              "'algorithm does not match the key'");
    CHECK_LUA("why(A1, {key = A2_KEY, now = A_NOW}) == 'algorithm not allowed'");
}

static void test_claims(void)
{
    run_lua("NOW = 1800000000\n"
            "function tok(claims) return sb.jwt.sign(claims, 'k', 'HS256') end\n"
            "function check(claims, opts)\n"
            "  opts = opts or {}\n"
            "  opts.secret = 'k'\n"
            "  opts.now = opts.now or NOW\n"
            "  return why(tok(claims), opts)\n"
            "end\n");
    CHECK_LUA("check({exp = NOW + 1}) == 'ok' and check({exp = NOW}) == 'expired'");
    CHECK_LUA("check({exp = NOW + 0.5}) == 'ok' and check({exp = NOW - 0.5}) == 'expired'");
    CHECK_LUA("check({exp = NOW - 5}, {leeway = 6}) == 'ok' and "
              "check({exp = NOW - 5}, {leeway = 5}) == 'expired'");
    CHECK_LUA("check({nbf = NOW}) == 'ok' and check({nbf = NOW + 1}) == 'not yet valid'");
    CHECK_LUA("check({nbf = NOW + 30}, {leeway = 30}) == 'ok'");
    CHECK_LUA("check({iat = NOW}) == 'ok' and check({iat = NOW + 1}) == 'issued in the future'");
    CHECK_LUA("check({iat = NOW + 10}, {leeway = 10}) == 'ok' and check({iat = 0}) == 'ok'");
    CHECK_LUA("check({exp = 'tomorrow'}) == 'malformed token: exp is not a number'");
    CHECK_LUA("check({nbf = {}}) == 'malformed token: nbf is not a number'");
    CHECK_LUA("check({iat = true}) == 'malformed token: iat is not a number'");
    /* iss and aud: a string or a list on both sides. */
    CHECK_LUA("check({iss = 'a'}, {iss = 'a'}) == 'ok' and check({iss = 'a'}, {iss = 'b'}) == "
              "'wrong issuer'");
    CHECK_LUA("check({iss = 'b'}, {iss = {'a', 'b'}}) == 'ok' and check({}, {iss = 'a'}) == "
              "'missing claim: iss'");
    CHECK_LUA("check({iss = {'a'}}, {iss = 'a'}) == 'wrong issuer'");
    CHECK_LUA("check({aud = 'x'}, {aud = 'x'}) == 'ok' and check({aud = {'y', 'x'}}, "
              "{aud = 'x'}) == 'ok'");
    CHECK_LUA("check({aud = {'y', 'x'}}, {aud = {'z', 'x'}}) == 'ok'");
    CHECK_LUA("check({aud = {'y'}}, {aud = {'z', 'x'}}) == 'wrong audience'");
    CHECK_LUA("check({aud = 'xx'}, {aud = 'x'}) == 'wrong audience'");
    CHECK_LUA("check({aud = 5}, {aud = 'x'}) == 'wrong audience'");
    CHECK_LUA("check({aud = sb.json.array()}, {aud = 'x'}) == 'wrong audience'");
    CHECK_LUA("check({}, {aud = 'x'}) == 'missing claim: aud'");
    CHECK_LUA("check({aud = 'x'}) == 'ok'");
    /* require */
    CHECK_LUA("check({sub = 'a'}, {require = {'sub'}}) == 'ok'");
    CHECK_LUA("check({sub = 'a'}, {require = {'sub', 'exp'}}) == 'missing claim: exp'");
    CHECK_LUA("check({}, {require = 'jti'}) == 'missing claim: jti'");
    /* The real clock when opts.now is absent. */
    CHECK_LUA("why(tok({exp = os.time() + 60}), {secret = 'k'}) == 'ok'");
    CHECK_LUA("why(tok({exp = os.time() - 60}), {secret = 'k'}) == 'expired'");
}

static void test_malformed(void)
{
    run_lua("GOOD = sb.jwt.sign({sub = 'x'}, 'k', 'HS256')\n"
            "H, P, S = GOOD:match('^([^.]*)%.([^.]*)%.([^.]*)$')\n"
            "function bad(token) return why(token, {secret = 'k'}) end\n");
    CHECK_LUA("bad(GOOD) == 'ok'");
    CHECK_LUA("bad(nil) == 'malformed token: a nil, not a string'");
    CHECK_LUA("bad(42) == 'malformed token: a number, not a string'");
    CHECK_LUA("bad('') == 'malformed token: not three segments separated by dots'");
    CHECK_LUA("bad(H .. '.' .. P) == 'malformed token: not three segments separated by dots'");
    CHECK_LUA("bad(GOOD .. '.') == 'malformed token: not three segments separated by dots'");
    CHECK_LUA("bad('..') == 'malformed token: the header is not a JSON object'");
    CHECK_LUA("bad('!' .. GOOD) == 'malformed token: bad base64url in the header'");
    CHECK_LUA("bad(H .. '=.' .. P .. '.' .. S) == 'malformed token: bad base64url in the header'");
    CHECK_LUA("bad(H .. '.' .. P .. '.' .. S .. '=') == "
              "'malformed token: bad base64url in the signature'");
    CHECK_LUA("bad(H .. '.' .. P .. '+.' .. S) == 'bad signature'");
    CHECK_LUA("(function() local input = H .. '.' .. P .. '+'\n"
              "  return bad(input .. '.' .. b64url(sb.hmac('sha256', 'k', input))) ==\n"
              "    'malformed token: bad base64url in the payload' end)()");
    CHECK_LUA("bad(H .. '.' .. P .. '.' .. S:sub(1, -2) .. ' ') == "
              "'malformed token: bad base64url in the signature'");
    /* 43 characters carry 32 bytes and 2 spare bits, which must be zero: one spelling only. */
    CHECK_LUA("(function() local abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
              "0123456789-_'\n"
              "  local v = abc:find(S:sub(-1), 1, true) - 1\n"
              "  local other = abc:sub((v ~ 1) + 1, (v ~ 1) + 1)\n"
              "  return #S == 43 and unb64url(S:sub(1, -2) .. other) == unb64url(S) and\n"
              "    bad(H .. '.' .. P .. '.' .. S:sub(1, -2) .. other) ==\n"
              "    'malformed token: bad base64url in the signature' end)()");
    CHECK_LUA("bad(b64url('{\"alg\":\"HS256\"') .. '.' .. P .. '.' .. S) == "
              "'malformed token: the header is not a JSON object'");
    CHECK_LUA("bad(b64url('[1]') .. '.' .. P .. '.' .. S) == "
              "'malformed token: the header is not a JSON object'");
    CHECK_LUA("bad(forge({typ = 'JWT'}, {})) == 'malformed token: the header has no alg'");
    CHECK_LUA("bad(forge({alg = 256}, {})) == 'malformed token: the header has no alg'");
    CHECK_LUA("bad(forge('{\"alg\":\"HS256\\\\u0000\"}', {})) == 'algorithm not allowed'");
    CHECK_LUA("bad(forge({alg = 'HS256', kid = 5}, {})) == "
              "'malformed token: the kid is not a string'");
    CHECK_LUA("bad(forge({alg = 'HS256', crit = {'exp'}}, {})) == 'unsupported crit header'");
    CHECK_LUA("bad(hs({alg = 'HS256'}, {}, 'k'):gsub('%.[^.]*%.', '.' .. b64url('[]') .. '.'))"
              " == 'bad signature'");
    CHECK_LUA("(function() local input = H .. '.' .. b64url('not json')\n"
              "  return bad(input .. '.' .. b64url(sb.hmac('sha256', 'k', input))) ==\n"
              "    'malformed token: the payload is not a JSON object' end)()");
    CHECK_LUA("(function() local input = H .. '.' .. b64url('[1, 2]')\n"
              "  return bad(input .. '.' .. b64url(sb.hmac('sha256', 'k', input))) ==\n"
              "    'malformed token: the payload is not a JSON object' end)()");
    CHECK_LUA("bad(H .. '.' .. P .. '.') == 'bad signature'");
    /* Huge tokens are refused before any work; a large valid one is fine. */
    CHECK_LUA("bad(('a'):rep(65537)) == 'malformed token: longer than 65536 bytes'");
    CHECK_LUA("bad(sb.jwt.sign({pad = ('p'):rep(40000)}, 'k', 'HS256')) == 'ok'");
    CHECK_LUA("bad(sb.jwt.sign({pad = ('p'):rep(50000)}, 'k', 'HS256')) == "
              "'malformed token: longer than 65536 bytes'");
    CHECK_LUA("bad(forge({alg = 'HS256'}, ('['):rep(5000))) == 'bad signature'");
    CHECK_LUA("bad(hs({alg = 'HS256'}, {}, 'k'):gsub('%.[^.]*%.', '.' .. "
              "b64url(('['):rep(5000)) .. '.')) == 'bad signature'");
    CHECK_LUA("(function() local input = H .. '.' .. b64url(('['):rep(5000))\n"
              "  return bad(input .. '.' .. b64url(sb.hmac('sha256', 'k', input))) ==\n"
              "    'malformed token: the payload is not a JSON object' end)()");
    /* Every prefix and one-byte change of a good token: refused with a reason, never raised. */
    CHECK_LUA("(function() for i = 0, #GOOD - 1 do local r = bad(GOOD:sub(1, i))\n"
              "  if type(r) ~= 'string' or r == 'ok' then return false end end\n"
              "  for i = 1, #GOOD do for _, c in ipairs({'.', '\\0', 'A', '\\255', '-'}) do\n"
              "    local t = GOOD:sub(1, i - 1) .. c .. GOOD:sub(i + 1)\n"
              "    local r = bad(t)\n"
              "    if type(r) ~= 'string' or (r == 'ok' and t ~= GOOD) then return false end\n"
              "  end end return true end)()");
}

static void test_misuse(void)
{
    CHECK_LUA("raises(sb.jwt.verify, 'a.b.c'):find('bad argument #2') ~= nil");
    CHECK_LUA("raises(sb.jwt.verify, 'a.b.c', {}):find('needs one of secret') ~= nil");
    CHECK_LUA("raises(sb.jwt.verify, 'a.b.c', {secret = 's', key = A2_KEY})"
              ":find('needs one of secret') ~= nil");
    CHECK_LUA("raises(sb.jwt.verify, 'a.b.c', {secret = 5}):find('opts.secret must be a "
              "string') ~= nil");
    CHECK_LUA("raises(sb.jwt.verify, 'a.b.c', {secret = ''}):find('must not be empty') ~= nil");
    CHECK_LUA("raises(sb.jwt.verify, 'a.b.c', {secret = 's', audience = 'x'})"
              ":find('unknown option audience') ~= nil");
    CHECK_LUA("raises(sb.jwt.verify, 'a.b.c', {secret = 's', leeway = -1})"
              ":find('opts.leeway must be a number >= 0') ~= nil");
    CHECK_LUA("raises(sb.jwt.verify, 'a.b.c', {secret = 's', leeway = '5'})"
              ":find('opts.leeway must be a number') ~= nil");
    CHECK_LUA("raises(sb.jwt.verify, 'a.b.c', {secret = 's', now = 'x'}) ~= false");
    CHECK_LUA("raises(sb.jwt.verify, 'a.b.c', {secret = 's', aud = 5})"
              ":find('opts.aud must be a string or a list of strings') ~= nil");
    CHECK_LUA("raises(sb.jwt.verify, 'a.b.c', {secret = 's', iss = {}})"
              ":find('opts.iss must not be an empty list') ~= nil");
    CHECK_LUA("raises(sb.jwt.verify, 'a.b.c', {secret = 's', iss = {1}}) ~= false");
    CHECK_LUA("raises(sb.jwt.verify, 'a.b.c', {secret = 's', require = true}) ~= false");
    CHECK_LUA("raises(sb.jwt.verify, 'a.b.c', {secret = 's', algorithms = {'HS256', 'XS1'}})"
              ":find(\"unsupported algorithm 'XS1'\") ~= nil");
    CHECK_LUA("raises(sb.jwt.verify, 'a.b.c', {key = 5}) ~= false");
    /* Key problems show once a token needs the key. */
    CHECK_LUA("raises(sb.jwt.verify, A2, {key = 'secret'}):find('opts.key must be a PEM key') "
              "~= nil");
    CHECK_LUA("raises(sb.jwt.verify, A2, {key = '{\"kty\":'}):find('opts.key is not JSON') "
              "~= nil");
    CHECK_LUA("raises(sb.jwt.verify, A2, {key = '-----BEGIN PUBLIC KEY-----\\nAAAA\\n"
              "-----END PUBLIC KEY-----\\n'}):find('opts.key is not a PEM') ~= nil");
    CHECK_LUA("raises(sb.jwt.verify, A2, {key = {kty = 'RSA'}}):find('without a base64url n') "
              "~= nil");
    CHECK_LUA("raises(sb.jwt.verify, A2, {key = {n = 'x'}}):find('without a kty') ~= nil");
    CHECK_LUA("raises(sb.jwt.verify, A3, {key = {kty = 'EC', crv = 'P-256', x = A3_KEY.y, "
              "y = A3_KEY.x}}):find('not on its curve') ~= nil");
    CHECK_LUA("raises(sb.jwt.verify, A2, {key = {keys = 5}}):find('keys is not a list') ~= nil");
    /* sign */
    CHECK_LUA("raises(sb.jwt.sign, {}, 's', 'none'):find('bad argument #3') ~= nil");
    CHECK_LUA("raises(sb.jwt.sign, {}, '', 'HS256'):find('must not be empty') ~= nil");
    CHECK_LUA("raises(sb.jwt.sign, 'claims', 's', 'HS256'):find('bad argument #1') ~= nil");
    CHECK_LUA("raises(sb.jwt.sign, {1, 2}, 's', 'HS256'):find('JSON object') ~= nil");
    CHECK_LUA("raises(sb.jwt.sign, {f = print}, 's', 'HS256') ~= false");
    CHECK_LUA("raises(sb.jwt.sign, {}, 's', 'RS256'):find('not a PEM private key') ~= nil");
    CHECK_LUA("raises(sb.jwt.sign, {}, RSA_PUB, 'RS256'):find('not a PEM private key') ~= nil");
    CHECK_LUA("raises(sb.jwt.sign, {}, P256, 'ES384'):find('does not fit ES384') ~= nil");
    CHECK_LUA("raises(sb.jwt.sign, {}, RSA, 'ES256'):find('does not fit ES256') ~= nil");
    CHECK_LUA("raises(sb.jwt.sign, {}, 's', 'HS256', 'h'):find('bad argument #4') ~= nil");
}

int main(void)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    lua_newtable(L);
    lua_crypto_register(L);
    lua_jwt_register(L);
    lua_json_open(L);
    lua_setfield(L, -2, "json");
    lua_setglobal(L, "sb");
    run_lua(prelude);
    run_lua(rfc7515);
    run_lua(rfc7520);
    make_keys();
    test_rfc7515();
    test_rfc7520();
    test_sign_round_trips();
    test_confusion();
    test_claims();
    test_malformed();
    test_misuse();
    lua_close(L);
    return CHECK_DONE();
}
