/* SPDX-License-Identifier: MIT */
/* lua_jwt: sb.jwt, JSON Web Tokens in the compact JWS form (RFC 7515, 7518, 7519) for scripts
 * (docs/lua-api.md, "sb.jwt"). sb.jwt.verify checks a token against a shared secret, a PEM
 * public key or certificate, a JWK or a JWK set (selected by the token's kid) for HS256/384/512,
 * RS256/384/512, PS256/384/512 and ES256/384, then its exp, nbf, iat, iss and aud claims; a bad
 * token is `nil, reason`, never an error. sb.jwt.sign makes a token with a secret (HS*) or a PEM
 * private key (RS*, PS*, ES*). Uses: OpenSSL's libcrypto (EVP), Lua, lua_json. */
#ifndef SB_LUA_JWT_H
#define SB_LUA_JWT_H

#include <lua.h>

/* Set the field `jwt` of the table on top of the stack to a new table holding the functions. */
void lua_jwt_register(lua_State *L);

#endif
