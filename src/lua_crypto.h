/* SPDX-License-Identifier: MIT */
/* lua_crypto: the signature helpers of the switchboard module (docs/contract.md §6): sb.hmac,
 * sb.digest, sb.hex, sb.base64, sb.base64_decode, sb.secure_compare. Uses: OpenSSL's libcrypto,
 * Lua. */
#ifndef SB_LUA_CRYPTO_H
#define SB_LUA_CRYPTO_H

#include <lua.h>

/* Add the functions to the table on top of the stack. */
void lua_crypto_register(lua_State *L);

#endif
