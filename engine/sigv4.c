/*
 * atlas.sigv4: the OpenSSL half of AWS Signature Version 4. The canonical request, the string
 * to sign and the Authorization header are string policy and live in lua/atlas/aws/sigv4.lua;
 * this module gives it SHA-256, HMAC-SHA256, hex, and the signature of a string to sign with
 * the derived signing key, which it caches without ever keeping the secret.
 */
#include <string.h>

/* OpenSSL's direct SHA256_* functions, deprecated in 3.0 in favour of EVP, are used on purpose
 * for plain digests: EVP looks the digest up in the provider store on each one-shot call, and
 * the first lookup of a process builds that store (~0.8 ms). HMAC is OpenSSL's, as every
 * SDK's is. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "atlas.h"

#define SHA256_LEN 32

static const char hex_digits[] = "0123456789abcdef";

/* ---- digests ----------------------------------------------------------- */

/* One HMAC context and one fetched SHA-256 for the process: the one-shot HMAC() of OpenSSL 3
 * looks the MAC and the digest up in the provider store on every call, which costs more than
 * the MAC itself. */
static void
hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
            unsigned char out[SHA256_LEN])
{
    static HMAC_CTX *ctx;
    static EVP_MD *sha256_md;
    unsigned int len = SHA256_LEN;
    if ((sha256_md != NULL || (sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL)) != NULL) &&
        (ctx != NULL || (ctx = HMAC_CTX_new()) != NULL) &&
        HMAC_Init_ex(ctx, key, (int)keylen, sha256_md, NULL) && HMAC_Update(ctx, msg, msglen) &&
        HMAC_Final(ctx, out, &len))
        return;
    memset(out, 0, SHA256_LEN); /* only on out of memory: the signature is refused */
}

static void
hex_encode(const unsigned char *in, size_t len, char *out)
{
    size_t i;
    for (i = 0; i < len; i++) {
        out[2 * i] = hex_digits[in[i] >> 4];
        out[2 * i + 1] = hex_digits[in[i] & 15];
    }
}

static void
sha256(const void *data, size_t len, unsigned char out[SHA256_LEN])
{
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, data, len);
    SHA256_Final(out, &ctx);
}

static void
sha256_hex(const void *data, size_t len, char out[2 * SHA256_LEN])
{
    unsigned char md[SHA256_LEN];
    sha256(data, len, md);
    hex_encode(md, SHA256_LEN, out);
}

/* ---- signing key cache -------------------------------------------------- */

/* The derived key depends only on secret, date, region and service, and a run talks to a few
 * regions and services, so, as the SDKs do, the derived key is kept per date, region and
 * service, which saves four HMACs per call. The secret itself is never kept: an entry is
 * found by a SHA-256 of the four fields, each preceded by its length so that none can run into
 * the next, and new credentials miss. */
#define KEY_CACHE_SIZE 8
static struct {
    unsigned char scope_id[SHA256_LEN];
    unsigned char key[SHA256_LEN];
} key_cache[KEY_CACHE_SIZE];
static int key_cache_next;

struct field {
    const char *s;
    size_t len;
};

static void
scope_id(const struct field f[4], unsigned char out[SHA256_LEN])
{
    SHA256_CTX ctx;
    int i;
    SHA256_Init(&ctx);
    for (i = 0; i < 4; i++) {
        SHA256_Update(&ctx, &f[i].len, sizeof f[i].len);
        SHA256_Update(&ctx, f[i].s, f[i].len);
    }
    SHA256_Final(out, &ctx);
}

/* f: secret, date, region, service */
static void
derive_signing_key(const struct field f[4], unsigned char out[SHA256_LEN])
{
    unsigned char k[SHA256_LEN];
    /* "AWS4" + secret is the first key; HMAC hashes a key longer than a block, so
     * hashing it here first is the same key without a copy of the secret. */
    unsigned char first_key[4 + 60];
    size_t first_len = 4 + f[0].len;

    if (f[0].len <= 60) {
        memcpy(first_key, "AWS4", 4);
        memcpy(first_key + 4, f[0].s, f[0].len);
    } else {
        SHA256_CTX ctx;
        SHA256_Init(&ctx);
        SHA256_Update(&ctx, "AWS4", 4);
        SHA256_Update(&ctx, f[0].s, f[0].len);
        SHA256_Final(first_key, &ctx);
        first_len = SHA256_LEN;
    }
    hmac_sha256(first_key, first_len, f[1].s, f[1].len, k);
    OPENSSL_cleanse(first_key, sizeof first_key);
    hmac_sha256(k, SHA256_LEN, f[2].s, f[2].len, k);
    hmac_sha256(k, SHA256_LEN, f[3].s, f[3].len, k);
    hmac_sha256(k, SHA256_LEN, "aws4_request", 12, out);
}

static void
signing_key(const struct field f[4], unsigned char out[SHA256_LEN])
{
    unsigned char id[SHA256_LEN];
    int i;

    scope_id(f, id);
    for (i = 0; i < KEY_CACHE_SIZE; i++) {
        if (memcmp(key_cache[i].scope_id, id, SHA256_LEN) == 0) {
            memcpy(out, key_cache[i].key, SHA256_LEN);
            return;
        }
    }
    derive_signing_key(f, out);
    memcpy(key_cache[key_cache_next].scope_id, id, SHA256_LEN);
    memcpy(key_cache[key_cache_next].key, out, SHA256_LEN);
    key_cache_next = (key_cache_next + 1) % KEY_CACHE_SIZE;
}

/* signature(secret, date, region, service, string_to_sign) -> lower-case hex signature
 * `date` is the scope's "YYYYMMDD"; the signing key comes from the cache above. */
static int
l_signature(lua_State *L)
{
    struct field f[4];
    size_t sts_len;
    const char *sts;
    unsigned char key[SHA256_LEN], mac[SHA256_LEN];
    char out[2 * SHA256_LEN];
    int i;

    for (i = 0; i < 4; i++)
        f[i].s = luaL_checklstring(L, i + 1, &f[i].len);
    sts = luaL_checklstring(L, 5, &sts_len);
    signing_key(f, key);
    hmac_sha256(key, SHA256_LEN, sts, sts_len, mac);
    OPENSSL_cleanse(key, sizeof key);
    hex_encode(mac, SHA256_LEN, out);
    lua_pushlstring(L, out, sizeof out);
    return 1;
}

/* sha256_hex(s) -> lower-case hex digest */
static int
l_sha256_hex(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    char out[64];
    sha256_hex(s, len, out);
    lua_pushlstring(L, out, 64);
    return 1;
}

/* hmac_sha256(key, s) -> 32 raw bytes */
static int
l_hmac_sha256(lua_State *L)
{
    size_t klen, len;
    const char *k = luaL_checklstring(L, 1, &klen);
    const char *s = luaL_checklstring(L, 2, &len);
    unsigned char out[SHA256_LEN];
    hmac_sha256(k, klen, s, len, out);
    lua_pushlstring(L, (const char *)out, SHA256_LEN);
    return 1;
}

/* hex(s) -> lower-case hex of the bytes of s */
static int
l_hex(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    hex_encode((const unsigned char *)s, len, luaL_buffinitsize(L, &b, 2 * len));
    luaL_pushresultsize(&b, 2 * len);
    return 1;
}

int
luaopen_atlas_sigv4(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"signature", l_signature},
        {"sha256_hex", l_sha256_hex},
        {"hmac_sha256", l_hmac_sha256},
        {"hex", l_hex},
        {NULL, NULL},
    };
    luaL_newlib(L, funcs);
    return 1;
}
