/* SPDX-License-Identifier: MIT */
/* lua_jwt: see lua_jwt.h.
 *
 * Every OpenSSL object lives between two Lua calls that cannot raise, except the parsed keys:
 * those sit in a userdata box with a __gc on the Lua stack, so a memory error raised while the
 * call goes on frees them too. OpenSSL's error queue is cleared after each failure, so a refused
 * token leaves nothing behind for the next user of the thread (libcurl's TLS reads that queue). */
#include "lua_jwt.h"

#include "lua_json.h"

#include <lauxlib.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define MAX_TOKEN 65536     /* bytes; far above any real token, well below what would cost */
#define MIN_RSA_BITS 2048   /* RFC 7518 §3.3 */
#define MAX_KID_SHOWN 64    /* characters of an unknown kid repeated in the reason */

/* ---- algorithms ----------------------------------------------------------------------------- */

enum family { HS, RS, PS, ES };

struct alg {
    const char *name;
    enum family family;
    int bits; /* of the digest; for ES also of the curve */
};

static const struct alg algs[] = {
    {"HS256", HS, 256}, {"HS384", HS, 384}, {"HS512", HS, 512},
    {"RS256", RS, 256}, {"RS384", RS, 384}, {"RS512", RS, 512},
    {"PS256", PS, 256}, {"PS384", PS, 384}, {"PS512", PS, 512},
    {"ES256", ES, 256}, {"ES384", ES, 384},
};
#define N_ALGS (sizeof algs / sizeof algs[0])

/* The algorithm named by the len bytes at name (which may hold a NUL byte), or NULL. */
static const struct alg *alg_by_name(const char *name, size_t len)
{
    for (size_t i = 0; i < N_ALGS; i++)
        if (strlen(algs[i].name) == len && memcmp(algs[i].name, name, len) == 0)
            return &algs[i];
    return NULL;
}

static const EVP_MD *alg_md(const struct alg *a)
{
    return a->bits == 256 ? EVP_sha256() : a->bits == 384 ? EVP_sha384() : EVP_sha512();
}

/* ---- keys ----------------------------------------------------------------------------------- */

enum key_kind { KEY_SECRET, KEY_RSA, KEY_RSA_PSS, KEY_EC };

struct key {
    enum key_kind kind;
    const unsigned char *secret; /* KEY_SECRET: bytes of a string on the Lua stack */
    size_t secret_len;
    EVP_PKEY *pkey;              /* the others: owned by a box on the Lua stack */
    int ec_bits;                 /* KEY_EC: 256 (P-256) or 384 (P-384) */
    const char *jwk_alg;         /* a JWK's "alg" (on the Lua stack), or NULL */
    int unfit;                   /* a JWK whose "use" or "key_ops" rule out signatures */
};

static const char BOX_METATABLE[] = "switchboard.jwt.key";

static int l_box_gc(lua_State *L)
{
    EVP_PKEY **box = lua_touserdata(L, 1);
    if (box && *box) {
        EVP_PKEY_free(*box);
        *box = NULL;
    }
    return 0;
}

/* A box for one EVP_PKEY, freed with the userdata.  [-0,+1,m] */
static EVP_PKEY **push_box(lua_State *L)
{
    EVP_PKEY **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    if (luaL_newmetatable(L, BOX_METATABLE)) {
        lua_pushcfunction(L, l_box_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return box;
}

/* Free the keys of the boxes above slot `top`, then drop those slots: OpenSSL's memory is not
 * counted by Lua's collector, so waiting for it could pile up keys.  [-?,+0,-] */
static void drop_to(lua_State *L, int top)
{
    for (int i = lua_gettop(L); i > top; i--) {
        EVP_PKEY **box = luaL_testudata(L, i, BOX_METATABLE);
        if (box && *box) {
            EVP_PKEY_free(*box);
            *box = NULL;
        }
    }
    lua_settop(L, top);
}

/* The kind of a parsed public or private key; NULL, or why it cannot sign or verify. */
static const char *classify(EVP_PKEY *pkey, struct key *k)
{
    k->pkey = pkey;
    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
        k->kind = EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA ? KEY_RSA : KEY_RSA_PSS;
        return EVP_PKEY_get_bits(pkey) < MIN_RSA_BITS ? "an RSA key shorter than 2048 bits"
                                                      : NULL;
    case EVP_PKEY_EC: {
        char group[64];
        size_t len = 0;
        k->kind = KEY_EC;
        if (!EVP_PKEY_get_group_name(pkey, group, sizeof group, &len)) {
            ERR_clear_error();
            return "an EC key without a named curve";
        }
        k->ec_bits = strcmp(group, "prime256v1") == 0 ? 256 : strcmp(group, "secp384r1") == 0 ? 384
                                                                                            : 0;
        return k->ec_bits ? NULL : "an EC key on a curve other than P-256 and P-384";
    }
    default:
        return "a key type other than RSA and EC";
    }
}

static int no_passphrase(char *pass, size_t size, size_t *len, const OSSL_PARAM params[],
                         void *arg)
{
    (void)pass, (void)size, (void)len, (void)params, (void)arg;
    return 0; /* an encrypted key is refused, never prompted for */
}

static int no_pem_passphrase(char *buf, int size, int rwflag, void *arg)
{
    (void)buf, (void)size, (void)rwflag, (void)arg;
    return -1;
}

/* A key from PEM text: a certificate, a public key (SPKI or PKCS#1) or, with `private_key`, only
 * a private key. Pushes its box; NULL or why not. */
static const char *load_pem(lua_State *L, const char *pem, size_t len, int private_key,
                            struct key *k)
{
    static const char cert_mark[] = "-----BEGIN CERTIFICATE-----";
    EVP_PKEY **box = push_box(L);
    if (len > INT_MAX)
        return "not a PEM key";
    EVP_PKEY *pkey = NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio && !private_key && memmem(pem, len, cert_mark, sizeof cert_mark - 1)) {
        X509 *cert = PEM_read_bio_X509(bio, NULL, no_pem_passphrase, NULL);
        if (cert)
            pkey = X509_get_pubkey(cert);
        X509_free(cert);
    } else if (bio && memmem(pem, len, "-----BEGIN PUBLIC KEY-----", 26)) {
        /* The common forms read directly: the generic decoder below costs ten times more. */
        if (!private_key)
            pkey = PEM_read_bio_PUBKEY(bio, NULL, no_pem_passphrase, NULL);
    } else if (bio && memmem(pem, len, "-----BEGIN PRIVATE KEY-----", 27)) {
        pkey = PEM_read_bio_PrivateKey(bio, NULL, no_pem_passphrase, NULL);
    } else if (bio) {
        OSSL_DECODER_CTX *dctx = OSSL_DECODER_CTX_new_for_pkey(
            &pkey, "PEM", NULL, NULL, private_key ? EVP_PKEY_KEYPAIR : 0, NULL, NULL);
        if (dctx && OSSL_DECODER_CTX_set_passphrase_cb(dctx, no_passphrase, NULL))
            OSSL_DECODER_from_bio(dctx, bio);
        OSSL_DECODER_CTX_free(dctx);
    }
    BIO_free(bio);
    ERR_clear_error();
    if (!pkey)
        return private_key ? "not an unencrypted PEM private key"
                           : "not a PEM public key, certificate or private key";
    *box = pkey;
    return classify(pkey, k);
}

/* ---- parsed public keys, kept per Lua state ------------------------------------------------- */

/* OpenSSL 3 takes about half a millisecond to read a PEM public key or certificate, some twenty
 * times the RS256 check itself, and channels verify every request with the same few keys
 * (hangouts with Google's certificates, socketio's jwt_key). So the keys read from PEM text are
 * kept in the state's registry, by their text: at most PEM_CACHE_SIZE, all dropped when it is
 * full (keys rotate rarely; the set starts again). Only keys that classify() accepted are kept. */
#define PEM_CACHE_SIZE 32

static const char pem_cache_key = 'p'; /* its address names the cache in the registry */

/* The cache table on top, made when missing.  [-0,+1,m] */
static void push_pem_cache(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &pem_cache_key) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_createtable(L, 0, PEM_CACHE_SIZE);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &pem_cache_key);
}

/* 1 and *k when the PEM text at `pem` was read before.  [-0,+0,m] */
static int cached_pem_key(lua_State *L, int pem, struct key *k)
{
    push_pem_cache(L);
    lua_pushvalue(L, pem);
    lua_rawget(L, -2);
    EVP_PKEY **box = luaL_testudata(L, -1, BOX_METATABLE);
    int found = box && *box && classify(*box, k) == NULL;
    lua_pop(L, 2);
    return found;
}

/* Keep the box on top (just read from the PEM text at `pem`) in the cache; the stack slot is
 * emptied so that drop_to does not free the kept key.  [-0,+0,m] */
static void remember_pem_key(lua_State *L, int pem)
{
    int box = lua_gettop(L);
    push_pem_cache(L);
    lua_Integer count = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        count++;
    }
    if (count >= PEM_CACHE_SIZE) {
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &pem_cache_key); /* the old keys go with the GC */
        push_pem_cache(L);
    }
    lua_pushvalue(L, pem);
    lua_pushvalue(L, box);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_replace(L, box);
}

/* ---- base64url ------------------------------------------------------------------------------ */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

/* Decode unpadded base64url into out (room for len * 3 / 4 bytes): the length, or -1 when a
 * character is outside the alphabet, the length is impossible, or the unused low bits of the
 * last character are not zero (so each byte string has one spelling). */
static long b64url_decode(const char *in, size_t len, unsigned char *out)
{
    if (len % 4 == 1)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    long n = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return acc ? -1 : n;
}

/* Push the bytes of base64url text; returns 0, or -1 with nothing pushed.  [-0,+(0|1),m] */
static int push_b64url_decoded(lua_State *L, const char *in, size_t len)
{
    luaL_Buffer b;
    unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, len / 4 * 3 + 3);
    long n = b64url_decode(in, len, out);
    luaL_pushresultsize(&b, n < 0 ? 0 : (size_t)n);
    if (n < 0) {
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

static void add_b64url(luaL_Buffer *b, const unsigned char *s, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        char *p = luaL_prepbuffsize(b, 4);
        p[0] = alphabet[v >> 18];
        p[1] = alphabet[(v >> 12) & 63];
        p[2] = alphabet[(v >> 6) & 63];
        p[3] = alphabet[v & 63];
        luaL_addsize(b, 4);
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        luaL_addchar(b, alphabet[v >> 18]);
        luaL_addchar(b, alphabet[(v >> 12) & 63]);
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        luaL_addchar(b, alphabet[v >> 18]);
        luaL_addchar(b, alphabet[(v >> 12) & 63]);
        luaL_addchar(b, alphabet[(v >> 6) & 63]);
    }
}

/* ---- JWK ------------------------------------------------------------------------------------ */

/* The bytes of the base64url member `name` of the JWK at t, pushed (trailing '=' tolerated);
 * NULL with nothing pushed when it is absent or not base64url. */
static const unsigned char *jwk_bytes(lua_State *L, int t, const char *name, size_t *len)
{
    size_t text_len;
    lua_getfield(L, t, name);
    const char *text = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &text_len) : NULL;
    while (text && text_len > 0 && text[text_len - 1] == '=')
        text_len--;
    if (!text || push_b64url_decoded(L, text, text_len) < 0) {
        lua_pop(L, 1);
        return NULL;
    }
    lua_remove(L, -2);
    return (const unsigned char *)lua_tolstring(L, -1, len);
}

/* Whether the list member `name` of t holds the string `want`. */
static int list_has(lua_State *L, int t, const char *name, const char *want)
{
    lua_getfield(L, t, name);
    int found = 0;
    if (lua_istable(L, -1)) {
        lua_Integer n = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= n && !found; i++) {
            lua_geti(L, -1, i);
            found = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), want) == 0;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return found;
}

static EVP_PKEY *rsa_from_jwk(const unsigned char *n, size_t n_len, const unsigned char *e,
                              size_t e_len)
{
    EVP_PKEY *pkey = NULL;
    BIGNUM *bn_n = BN_bin2bn(n, (int)n_len, NULL), *bn_e = BN_bin2bn(e, (int)e_len, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (bn_n && bn_e && bld && ctx && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) &&
        (params = OSSL_PARAM_BLD_to_param(bld)) != NULL && EVP_PKEY_fromdata_init(ctx) == 1 &&
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    return pkey;
}

static EVP_PKEY *ec_from_jwk(const char *group, const unsigned char *x, const unsigned char *y,
                             size_t size)
{
    unsigned char point[1 + 2 * 48];
    point[0] = 4; /* uncompressed */
    memcpy(point + 1, x, size);
    memcpy(point + 1 + size, y, size);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * size),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    if (pkey) { /* the point must be on the curve */
        EVP_PKEY_CTX *check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (!check || EVP_PKEY_public_check(check) != 1) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
        EVP_PKEY_CTX_free(check);
    }
    return pkey;
}

/* A key from the JWK table at t (RFC 7517, 7518 §6): "oct", "RSA" or "EC" on P-256 or P-384;
 * private members are ignored. Leaves what it needs on the stack; NULL or why not. */
static const char *load_jwk(lua_State *L, int t, struct key *k)
{
    memset(k, 0, sizeof *k);
    lua_getfield(L, t, "kty");
    const char *kty = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (!kty)
        return "a JWK without a kty";
    lua_getfield(L, t, "alg");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return "a JWK whose alg is not a string";
    k->jwk_alg = lua_tostring(L, -1);
    lua_getfield(L, t, "use");
    k->unfit = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "sig") != 0;
    lua_pop(L, 1);
    lua_getfield(L, t, "key_ops");
    int has_ops = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (has_ops && !list_has(L, t, "key_ops", "verify") && !list_has(L, t, "key_ops", "sign"))
        k->unfit = 1;
    if (strcmp(kty, "oct") == 0) {
        k->kind = KEY_SECRET;
        k->secret = jwk_bytes(L, t, "k", &k->secret_len);
        return !k->secret ? "an oct JWK without a base64url k"
               : k->secret_len == 0 ? "an oct JWK with an empty k" : NULL;
    }
    if (strcmp(kty, "RSA") == 0) {
        size_t n_len, e_len;
        const unsigned char *n = jwk_bytes(L, t, "n", &n_len), *e = jwk_bytes(L, t, "e", &e_len);
        if (!n || !e || n_len == 0 || e_len == 0 || n_len > 2048 || e_len > 16)
            return "an RSA JWK without a base64url n and e";
        EVP_PKEY **box = push_box(L);
        *box = rsa_from_jwk(n, n_len, e, e_len);
        ERR_clear_error();
        return *box ? classify(*box, k) : "an RSA JWK OpenSSL refuses";
    }
    if (strcmp(kty, "EC") == 0) {
        lua_getfield(L, t, "crv");
        const char *crv = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        size_t size = strcmp(crv, "P-256") == 0 ? 32 : strcmp(crv, "P-384") == 0 ? 48 : 0;
        if (!size)
            return "an EC JWK on a curve other than P-256 and P-384";
        size_t x_len, y_len;
        const unsigned char *x = jwk_bytes(L, t, "x", &x_len), *y = jwk_bytes(L, t, "y", &y_len);
        if (!x || !y || x_len != size || y_len != size)
            return "an EC JWK whose x and y are not base64url of the curve's size";
        EVP_PKEY **box = push_box(L);
        *box = ec_from_jwk(size == 32 ? "prime256v1" : "secp384r1", x, y, size);
        ERR_clear_error();
        return *box ? classify(*box, k) : "an EC JWK whose point is not on its curve";
    }
    return "a JWK whose kty is not oct, RSA or EC";
}

/* Whether key k may check or make a signature of algorithm a. */
static int fits(const struct key *k, const struct alg *a)
{
    if (k->unfit || (k->jwk_alg && strcmp(k->jwk_alg, a->name) != 0))
        return 0;
    switch (a->family) {
    case HS:
        return k->kind == KEY_SECRET;
    case RS:
        return k->kind == KEY_RSA;
    case PS:
        return k->kind == KEY_RSA || k->kind == KEY_RSA_PSS;
    case ES:
        return k->kind == KEY_EC && k->ec_bits == a->bits;
    }
    return 0;
}

/* ---- signatures ----------------------------------------------------------------------------- */

static int set_padding(EVP_PKEY_CTX *pctx, const struct alg *a)
{
    if (a->family != PS)
        return a->family != RS || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1;
    /* RFC 7518 §3.5: MGF1 with the same hash, a salt as long as the hash. */
    return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, alg_md(a)) == 1;
}

/* An ES signature as JOSE sends it (r and s, each the curve's size, big-endian) in DER; the
 * length, 0 when it cannot be. *der is OpenSSL's, for OPENSSL_free. */
static int ecdsa_raw_to_der(const unsigned char *sig, size_t size, unsigned char **der)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)size, NULL), *s = BN_bin2bn(sig + size, (int)size, NULL);
    int len = 0;
    if (es && r && s && ECDSA_SIG_set0(es, r, s)) {
        r = s = NULL; /* owned by es now */
        *der = NULL;
        len = i2d_ECDSA_SIG(es, der);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return len > 0 ? len : 0;
}

/* Whether sig is the signature of data under key k with algorithm a (k fits a). */
static int check_signature(const struct alg *a, const struct key *k, const unsigned char *data,
                           size_t len, const unsigned char *sig, size_t sig_len)
{
    if (a->family == HS) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mac_len = 0;
        if (k->secret_len > INT_MAX ||
            !HMAC(alg_md(a), k->secret, (int)k->secret_len, data, len, mac, &mac_len)) {
            ERR_clear_error();
            return 0;
        }
        return sig_len == mac_len && CRYPTO_memcmp(sig, mac, mac_len) == 0;
    }
    unsigned char *der = NULL;
    if (a->family == ES) {
        size_t size = (size_t)a->bits / 8;
        if (sig_len != 2 * size)
            return 0;
        int der_len = ecdsa_raw_to_der(sig, size, &der);
        if (!der_len) {
            ERR_clear_error();
            return 0;
        }
        sig = der;
        sig_len = (size_t)der_len;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int ok = ctx && EVP_DigestVerifyInit(ctx, &pctx, alg_md(a), NULL, k->pkey) == 1 &&
             set_padding(pctx, a) && EVP_DigestVerify(ctx, sig, sig_len, data, len) == 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    ERR_clear_error();
    return ok;
}

/* Sign data with k (which fits a) into out, which has room for the key's largest signature
 * (EVP_PKEY_get_size) or EVP_MAX_MD_SIZE; the signature's length, 0 on failure. ES signatures
 * come out as JOSE's r || s. */
static size_t make_signature(const struct alg *a, const struct key *k, const unsigned char *data,
                             size_t len, unsigned char *out, size_t room)
{
    if (a->family == HS) {
        unsigned int mac_len = 0;
        if (k->secret_len > INT_MAX ||
            !HMAC(alg_md(a), k->secret, (int)k->secret_len, data, len, out, &mac_len))
            mac_len = 0;
        ERR_clear_error();
        return mac_len;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    size_t sig_len = room;
    if (!ctx || EVP_DigestSignInit(ctx, &pctx, alg_md(a), NULL, k->pkey) != 1 ||
        !set_padding(pctx, a) || EVP_DigestSign(ctx, out, &sig_len, data, len) != 1)
        sig_len = 0;
    EVP_MD_CTX_free(ctx);
    if (sig_len && a->family == ES) {
        /* DER to r || s, each padded to the curve's size, in place (the DER is longer). */
        size_t size = (size_t)a->bits / 8;
        const unsigned char *p = out;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)sig_len);
        const BIGNUM *r = NULL, *s = NULL;
        unsigned char raw[2 * 48];
        if (es)
            ECDSA_SIG_get0(es, &r, &s);
        if (!es || BN_bn2binpad(r, raw, (int)size) < 0 || BN_bn2binpad(s, raw + size, (int)size) < 0)
            sig_len = 0;
        else
            memcpy(out, raw, sig_len = 2 * size);
        ECDSA_SIG_free(es);
    }
    ERR_clear_error();
    return sig_len;
}

/* ---- options -------------------------------------------------------------------------------- */

static int looks_like_pem(const char *s, size_t len)
{
    return memmem(s, len, "-----BEGIN", 10) != NULL;
}

/* Raise "bad argument #arg to 'name' (opts.<field> <what>)". */
static int opt_error(lua_State *L, int arg, const char *field, const char *what)
{
    return luaL_argerror(L, arg, lua_pushfstring(L, "opts.%s %s", field, what));
}

/* Check that the value at idx is a string or a non-empty list of strings. */
static void check_strings(lua_State *L, int idx, const char *field)
{
    if (lua_type(L, idx) == LUA_TSTRING)
        return;
    if (!lua_istable(L, idx))
        opt_error(L, 2, field, "must be a string or a list of strings");
    lua_Integer n = luaL_len(L, idx);
    if (n < 1)
        opt_error(L, 2, field, "must not be an empty list");
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_geti(L, idx, i) != LUA_TSTRING)
            opt_error(L, 2, field, "must be a string or a list of strings");
        lua_pop(L, 1);
    }
}

/* Whether the string or list at idx (checked by check_strings) holds s. */
static int strings_have(lua_State *L, int idx, const char *s, size_t len)
{
    size_t item_len;
    if (lua_type(L, idx) == LUA_TSTRING) {
        const char *item = lua_tolstring(L, idx, &item_len);
        return item_len == len && memcmp(item, s, len) == 0;
    }
    lua_Integer n = luaL_len(L, idx);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, idx, i);
        const char *item = lua_tolstring(L, -1, &item_len);
        int equal = item && item_len == len && memcmp(item, s, len) == 0;
        lua_pop(L, 1);
        if (equal)
            return 1;
    }
    return 0;
}

struct verify_opts {
    int secret, key;          /* stack slots of opts.secret and opts.key (0: absent) */
    int iss, aud, require;    /* stack slots (0: absent) */
    int has_algorithms;
    int allowed[N_ALGS];      /* with has_algorithms: the algorithms opts.algorithms lists */
    double leeway, now;
};

/* The field `name` of opts (argument 2) on the stack; its slot, or 0 when nil. */
static int opt_field(lua_State *L, const char *name)
{
    if (lua_getfield(L, 2, name) == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    return lua_gettop(L);
}

static double opt_number(lua_State *L, const char *name, double fallback, int nonnegative)
{
    int slot = opt_field(L, name);
    if (!slot)
        return fallback;
    if (lua_type(L, slot) != LUA_TNUMBER)
        opt_error(L, 2, name, "must be a number");
    double v = lua_tonumber(L, slot);
    if (v != v || (nonnegative && v < 0))
        opt_error(L, 2, name, "must be a number >= 0");
    return v;
}

static void read_opts(lua_State *L, struct verify_opts *o)
{
    static const char *const known[] = {"secret", "key", "algorithms", "leeway", "iss", "aud",
                                        "now", "require", NULL};
    luaL_checktype(L, 2, LUA_TTABLE);
    /* A misspelt option (audience for aud) would silently check nothing: refuse it. */
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        lua_pop(L, 1);
        int ok = 0;
        if (lua_type(L, -1) == LUA_TSTRING)
            for (int i = 0; known[i] && !ok; i++)
                ok = strcmp(known[i], lua_tostring(L, -1)) == 0;
        if (!ok)
            luaL_argerror(L, 2, lua_pushfstring(L, "unknown option %s",
                                                luaL_tolstring(L, -1, NULL)));
    }
    memset(o, 0, sizeof *o);
    o->secret = opt_field(L, "secret");
    o->key = opt_field(L, "key");
    if (!o->secret == !o->key)
        luaL_argerror(L, 2, "opts needs one of secret (HS algorithms) and key (a PEM, JWK or JWKS)");
    if (o->secret) {
        size_t len;
        if (lua_type(L, o->secret) != LUA_TSTRING)
            opt_error(L, 2, "secret", "must be a string");
        const char *s = lua_tolstring(L, o->secret, &len);
        if (len == 0)
            opt_error(L, 2, "secret", "must not be empty");
        /* A public key used as an HMAC secret is the classic forgery: keys go in opts.key. */
        if (looks_like_pem(s, len))
            opt_error(L, 2, "secret", "is a PEM key: give it as opts.key");
    }
    if (o->key && lua_type(L, o->key) != LUA_TSTRING && !lua_istable(L, o->key))
        opt_error(L, 2, "key", "must be a PEM string, a JWK or a JWKS (a table or JSON text)");
    int algorithms = opt_field(L, "algorithms");
    if (algorithms) {
        check_strings(L, algorithms, "algorithms");
        o->has_algorithms = 1;
        for (size_t i = 0; i < N_ALGS; i++)
            o->allowed[i] = strings_have(L, algorithms, algs[i].name, strlen(algs[i].name));
        /* Every name must be one this host implements ("none" is not). */
        lua_Integer n = lua_type(L, algorithms) == LUA_TSTRING ? 1 : luaL_len(L, algorithms);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_type(L, algorithms) == LUA_TSTRING)
                lua_pushvalue(L, algorithms);
            else
                lua_geti(L, algorithms, i);
            size_t name_len;
            const char *name = lua_tolstring(L, -1, &name_len);
            if (!alg_by_name(name, name_len))
                opt_error(L, 2, "algorithms",
                          lua_pushfstring(L, "names an unsupported algorithm '%s'",
                                          lua_tostring(L, -1)));
            lua_pop(L, 1);
        }
    }
    o->leeway = opt_number(L, "leeway", 0, 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    o->now = opt_number(L, "now", (double)ts.tv_sec + (double)ts.tv_nsec / 1e9, 0);
    o->iss = opt_field(L, "iss");
    if (o->iss)
        check_strings(L, o->iss, "iss");
    o->aud = opt_field(L, "aud");
    if (o->aud)
        check_strings(L, o->aud, "aud");
    o->require = opt_field(L, "require");
    if (o->require) {
        check_strings(L, o->require, "require");
    }
}

/* ---- verify --------------------------------------------------------------------------------- */

/* The reason for an unknown kid, with the kid shown safely (printable ASCII, cut short).
 * [-0,+1,m] */
static const char *unknown_kid(lua_State *L, const char *kid, size_t len)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "unknown kid \"");
    for (size_t i = 0; i < len && i < MAX_KID_SHOWN; i++)
        luaL_addchar(&b, kid[i] >= 0x20 && kid[i] < 0x7f && kid[i] != '"' ? kid[i] : '?');
    luaL_addstring(&b, len > MAX_KID_SHOWN ? "...\"" : "\"");
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

static const char mismatch[] = "algorithm does not match the key";

/* The key of the JWKS at t for a token of algorithm a with kid (NULL: none): the first entry
 * with that kid which fits a, or without a kid the one entry that fits a. NULL, or the reason
 * the token cannot be checked (`mismatch` when only keys of another kind have the kid). */
static const char *select_from_set(lua_State *L, int t, const struct alg *a, const char *kid,
                                   size_t kid_len, struct key *k)
{
    lua_Integer n = luaL_len(L, t);
    int top = lua_gettop(L), fitting = 0, unfit = 0;
    const char *unusable = NULL;
    struct key candidate;
    for (lua_Integer i = 1; i <= n; i++) {
        drop_to(L, top);
        if (lua_geti(L, t, i) != LUA_TTABLE)
            continue;
        int entry = lua_gettop(L);
        if (kid) {
            size_t len;
            lua_getfield(L, entry, "kid");
            const char *entry_kid = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len)
                                                                   : NULL;
            if (!entry_kid || len != kid_len || memcmp(entry_kid, kid, len) != 0)
                continue;
        }
        const char *err = load_jwk(L, entry, &candidate); /* a literal */
        if (err) { /* a key this host cannot use is skipped */
            unusable = unusable ? unusable : err;
            continue;
        }
        if (!fits(&candidate, a)) {
            unfit++;
            continue;
        }
        if (++fitting > 1)
            return lua_pushfstring(L, "ambiguous key: the token has no kid and several keys of "
                                      "the set fit %s", a->name);
        *k = candidate;
        if (kid)
            return NULL;
        top = lua_gettop(L); /* keep what the candidate holds on the stack */
    }
    if (fitting == 1)
        return NULL;
    if (kid && unusable)
        return lua_pushfstring(L, "unusable key: %s", unusable);
    if (kid && unfit)
        return mismatch;
    if (kid)
        return unknown_kid(L, kid, kid_len);
    return lua_pushfstring(L, "unknown kid (the token has none, and no key of the set fits %s)",
                           a->name);
}

/* The key opts give for a token of algorithm a; NULL, or the reason the token cannot be
 * checked. Keys given wrongly (not a kid a set lacks) raise. */
static const char *select_key(lua_State *L, struct verify_opts *o, const struct alg *a,
                              const char *kid, size_t kid_len, struct key *k)
{
    memset(k, 0, sizeof *k);
    if (o->secret) {
        k->kind = KEY_SECRET;
        k->secret = (const unsigned char *)lua_tolstring(L, o->secret, &k->secret_len);
        return NULL;
    }
    int slot = o->key;
    if (lua_type(L, slot) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, slot, &len);
        size_t skip = strspn(s, " \t\r\n");
        if (looks_like_pem(s, len)) {
            if (cached_pem_key(L, slot, k))
                return NULL;
            const char *err = load_pem(L, s, len, 0, k);
            if (err)
                opt_error(L, 2, "key", lua_pushfstring(L, "is %s", err));
            remember_pem_key(L, slot);
            return NULL;
        }
        if (s[skip] != '{')
            opt_error(L, 2, "key", "must be a PEM key, a JWK or a JWKS (a shared secret goes in "
                                   "opts.secret)");
        if (sb_json_decode(L, s, len) < 0)
            opt_error(L, 2, "key", lua_pushfstring(L, "is not JSON: %s", lua_tostring(L, -1)));
        if (!lua_istable(L, -1))
            opt_error(L, 2, "key", "is JSON but not a JWK or a JWKS");
        slot = lua_gettop(L);
    }
    if (lua_getfield(L, slot, "keys") != LUA_TNIL) {
        if (!lua_istable(L, -1))
            opt_error(L, 2, "key", "is a JWKS whose keys is not a list");
        return select_from_set(L, lua_gettop(L), a, kid, kid_len, k);
    }
    const char *err = load_jwk(L, slot, k);
    if (err)
        opt_error(L, 2, "key", lua_pushfstring(L, "is %s", err));
    return NULL;
}

/* The number claim `name` of the claims at t: 1 and *v, 0 when absent, -1 when not a number. */
static int time_claim(lua_State *L, int t, const char *name, double *v)
{
    int type = lua_getfield(L, t, name);
    *v = type == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
    lua_pop(L, 1);
    return type == LUA_TNIL ? 0 : type == LUA_TNUMBER ? 1 : -1;
}

/* Whether the token's aud (a string or a list of strings, at the top) names one of opts.aud. */
static int audience_matches(lua_State *L, int wanted, int aud)
{
    size_t len;
    if (lua_type(L, aud) == LUA_TSTRING) {
        const char *s = lua_tolstring(L, aud, &len);
        return strings_have(L, wanted, s, len);
    }
    if (!lua_istable(L, aud))
        return 0;
    lua_Integer n = (lua_Integer)lua_rawlen(L, aud);
    for (lua_Integer i = 1; i <= n; i++) {
        int found = 0;
        if (lua_rawgeti(L, aud, i) == LUA_TSTRING) {
            const char *s = lua_tolstring(L, -1, &len);
            found = strings_have(L, wanted, s, len);
        }
        lua_pop(L, 1);
        if (found)
            return 1;
    }
    return 0;
}

/* The claims at t against opts; NULL or the reason. */
static const char *check_claims(lua_State *L, const struct verify_opts *o, int t)
{
    static const char *const names[] = {"exp", "nbf", "iat"};
    double v[3];
    int present[3];
    for (int i = 0; i < 3; i++) {
        present[i] = time_claim(L, t, names[i], &v[i]);
        if (present[i] < 0)
            return lua_pushfstring(L, "malformed token: %s is not a number", names[i]);
    }
    if (present[0] && o->now >= v[0] + o->leeway)
        return "expired";
    if (present[1] && v[1] > o->now + o->leeway)
        return "not yet valid";
    if (present[2] && v[2] > o->now + o->leeway)
        return "issued in the future";
    if (o->iss) {
        size_t len;
        int type = lua_getfield(L, t, "iss");
        if (type == LUA_TNIL)
            return "missing claim: iss";
        const char *iss = type == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (!iss || !strings_have(L, o->iss, iss, len))
            return "wrong issuer";
        lua_pop(L, 1);
    }
    if (o->aud) {
        if (lua_getfield(L, t, "aud") == LUA_TNIL)
            return "missing claim: aud";
        if (!audience_matches(L, o->aud, lua_gettop(L)))
            return "wrong audience";
        lua_pop(L, 1);
    }
    if (o->require) {
        lua_Integer n = lua_type(L, o->require) == LUA_TSTRING ? 1 : luaL_len(L, o->require);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_type(L, o->require) == LUA_TSTRING)
                lua_pushvalue(L, o->require);
            else
                lua_geti(L, o->require, i);
            const char *name = lua_tostring(L, -1);
            int missing = lua_getfield(L, t, name) == LUA_TNIL;
            lua_pop(L, 1);
            if (missing)
                return lua_pushfstring(L, "missing claim: %s", name);
            lua_pop(L, 1);
        }
    }
    return NULL;
}

/* Push the JSON object in the base64url segment; NULL, or what is wrong with it. */
static const char *push_segment(lua_State *L, const char *seg, size_t len, const char *what)
{
    if (push_b64url_decoded(L, seg, len) < 0)
        return lua_pushfstring(L, "malformed token: bad base64url in the %s", what);
    size_t n;
    const char *text = lua_tolstring(L, -1, &n);
    if (text[strspn(text, " \t\r\n")] != '{' || sb_json_decode(L, text, n) < 0)
        return lua_pushfstring(L, "malformed token: the %s is not a JSON object", what);
    lua_remove(L, -2);
    return NULL;
}

/* Answer nil, reason; the call's keys are freed now (reason may be on the stack: kept). */
static int refuse(lua_State *L, const char *reason)
{
    lua_pushstring(L, reason);
    lua_replace(L, 1);
    drop_to(L, 1);
    lua_pushnil(L);
    lua_insert(L, 1);
    return 2;
}

/* sb.jwt.verify(token, opts) -> claims, header | nil, reason. opts: secret or key, algorithms,
 * leeway, iss, aud, now, require (docs/lua-api.md). Bad opts raise; a bad token never does.
 * [-0,+2,v] */
static int l_verify(lua_State *L)
{
    struct verify_opts o;
    lua_settop(L, 2);
    read_opts(L, &o);
    if (lua_type(L, 1) != LUA_TSTRING)
        return refuse(L, lua_pushfstring(L, "malformed token: a %s, not a string",
                                         luaL_typename(L, 1)));
    size_t len;
    const char *token = lua_tolstring(L, 1, &len);
    if (len > MAX_TOKEN)
        return refuse(L, "malformed token: longer than 65536 bytes");
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
        return refuse(L, "malformed token: not three segments separated by dots");
    const char *payload = dot1 + 1, *sig = dot2 + 1;
    size_t header_len = (size_t)(dot1 - token), payload_len = (size_t)(dot2 - payload);
    size_t sig_len = len - (size_t)(sig - token);

    const char *err = push_segment(L, token, header_len, "header");
    if (err)
        return refuse(L, err);
    int header = lua_gettop(L);
    if (lua_getfield(L, header, "alg") != LUA_TSTRING)
        return refuse(L, "malformed token: the header has no alg");
    size_t alg_len;
    const char *alg_name = lua_tolstring(L, -1, &alg_len);
    const struct alg *a = alg_by_name(alg_name, alg_len);
    if (!a || (o.has_algorithms && !o.allowed[a - algs]))
        return refuse(L, "algorithm not allowed");
    if (lua_getfield(L, header, "crit") != LUA_TNIL)
        return refuse(L, "unsupported crit header");
    size_t kid_len = 0;
    int kid_type = lua_getfield(L, header, "kid");
    if (kid_type != LUA_TNIL && kid_type != LUA_TSTRING)
        return refuse(L, "malformed token: the kid is not a string");
    const char *kid = kid_type == LUA_TSTRING ? lua_tolstring(L, -1, &kid_len) : NULL;

    struct key k;
    err = select_key(L, &o, a, kid, kid_len, &k);
    if (!err && !fits(&k, a))
        err = mismatch;
    if (err == mismatch && !o.has_algorithms) /* then the key's kind decides what is allowed */
        err = "algorithm not allowed";
    if (err)
        return refuse(L, err);

    if (push_b64url_decoded(L, sig, sig_len) < 0)
        return refuse(L, "malformed token: bad base64url in the signature");
    size_t raw_len;
    const unsigned char *raw = (const unsigned char *)lua_tolstring(L, -1, &raw_len);
    if (!check_signature(a, &k, (const unsigned char *)token, header_len + 1 + payload_len, raw,
                         raw_len))
        return refuse(L, "bad signature");

    err = push_segment(L, payload, payload_len, "payload");
    if (err)
        return refuse(L, err);
    int claims = lua_gettop(L);
    err = check_claims(L, &o, claims);
    if (err)
        return refuse(L, err);
    lua_copy(L, claims, 1);
    lua_copy(L, header, 2);
    drop_to(L, 2);
    return 2;
}

/* ---- sign ----------------------------------------------------------------------------------- */

/* sb.jwt.sign(claims, key, alg [, header]) -> token. key: the secret for HS*, a PEM private key
 * for RS*, PS* and ES*; header: more header fields (kid, typ). Misuse raises.  [-0,+1,v] */
static int l_sign(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t key_len;
    const char *key = luaL_checklstring(L, 2, &key_len);
    size_t alg_len;
    const char *alg_name = luaL_checklstring(L, 3, &alg_len);
    const struct alg *a = alg_by_name(alg_name, alg_len);
    if (!a)
        luaL_argerror(L, 3, "must be HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, "
                            "PS512, ES256 or ES384");
    if (!lua_isnoneornil(L, 4))
        luaL_checktype(L, 4, LUA_TTABLE);
    lua_settop(L, 4);

    struct key k;
    memset(&k, 0, sizeof k);
    if (a->family == HS) {
        if (key_len == 0)
            luaL_argerror(L, 2, "the secret must not be empty");
        if (looks_like_pem(key, key_len))
            luaL_argerror(L, 2, "HS algorithms take a shared secret, not a PEM key");
        k.kind = KEY_SECRET;
        k.secret = (const unsigned char *)key;
        k.secret_len = key_len;
    } else {
        const char *err = memmem(key, key_len, "PRIVATE KEY-----", 16)
                              ? load_pem(L, key, key_len, 1, &k)
                              : "not a PEM private key";
        if (err)
            luaL_argerror(L, 2, lua_pushfstring(L, "the key is %s", err));
        if (!fits(&k, a))
            luaL_argerror(L, 2, lua_pushfstring(L, "the key does not fit %s", a->name));
    }

    /* The header: the fields given, alg, and typ "JWT" unless given. */
    lua_newtable(L);
    int header = lua_gettop(L);
    if (lua_istable(L, 4)) {
        lua_pushnil(L);
        while (lua_next(L, 4)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, header);
        }
    }
    if (lua_getfield(L, header, "typ") == LUA_TNIL) {
        lua_pushliteral(L, "JWT");
        lua_setfield(L, header, "typ");
    }
    lua_pop(L, 1);
    lua_pushstring(L, a->name);
    lua_setfield(L, header, "alg");
    sb_json_encode(L, header);
    int header_json = lua_gettop(L);
    sb_json_encode(L, 1);
    int claims_json = lua_gettop(L);
    if (lua_tostring(L, claims_json)[0] != '{')
        luaL_argerror(L, 1, "the claims must be a table with string keys (a JSON object)");

    size_t hlen, clen;
    const char *h = lua_tolstring(L, header_json, &hlen), *c = lua_tolstring(L, claims_json, &clen);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    add_b64url(&b, (const unsigned char *)h, hlen);
    luaL_addchar(&b, '.');
    add_b64url(&b, (const unsigned char *)c, clen);
    luaL_pushresult(&b);
    size_t input_len;
    const char *input = lua_tolstring(L, -1, &input_len);

    size_t room = k.pkey ? (size_t)EVP_PKEY_get_size(k.pkey) : 0;
    room = room > EVP_MAX_MD_SIZE ? room : EVP_MAX_MD_SIZE;
    unsigned char *sig = lua_newuserdatauv(L, room, 0);
    size_t sig_len = make_signature(a, &k, (const unsigned char *)input, input_len, sig, room);
    if (!sig_len)
        return luaL_error(L, "sb.jwt.sign: signing with %s failed", a->name);
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, input, input_len);
    luaL_addchar(&b, '.');
    add_b64url(&b, sig, sig_len);
    luaL_pushresult(&b);
    lua_replace(L, 1);
    drop_to(L, 1);
    return 1;
}

void lua_jwt_register(lua_State *L)
{
    static const luaL_Reg functions[] = {
        {"verify", l_verify},
        {"sign", l_sign},
        {NULL, NULL},
    };
    luaL_newlib(L, functions);
    lua_setfield(L, -2, "jwt");
}
