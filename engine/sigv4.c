/*
 * atlas.sigv4: AWS Signature Version 4 (header-signed variant) with OpenSSL.
 *
 * The url given to sign() is the URL as it goes on the wire, already
 * percent-encoded by the caller. For services other than S3 the canonical URI
 * encodes each path byte once more ("double encoding"), which is what the AWS
 * SDKs do: a function name "a:b" travels as "a%3Ab" and is signed as "a%253Ab".
 */
#include <strings.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
static const char hex_upper[] = "0123456789ABCDEF";

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
 * service, which saves four HMACs per call. The secret itself is never kept: an entry holds a
 * SHA-256 fingerprint of it, so that new credentials miss. Oversized fields are not cached. */
#define KEY_CACHE_SIZE 8
struct signing_key {
    unsigned char secret_fingerprint[SHA256_LEN];
    char date[9];
    char region[32];
    char service[64];
    unsigned char key[SHA256_LEN];
};
static struct signing_key key_cache[KEY_CACHE_SIZE];
static int key_cache_next;

static int
fits(const char *s, size_t len, size_t cap)
{
    return len < cap && memchr(s, '\0', len) == NULL;
}

static void
derive_signing_key(const char *secret, size_t secret_len, const char *date, const char *region,
                   size_t region_len, const char *service, size_t service_len,
                   unsigned char out[SHA256_LEN])
{
    unsigned char k[SHA256_LEN];
    /* "AWS4" + secret is the first key; HMAC hashes a key longer than a block, so
     * hashing it here first is the same key without a copy of the secret. */
    unsigned char first_key[4 + 60];
    size_t first_len = 4 + secret_len;

    if (secret_len <= 60) {
        memcpy(first_key, "AWS4", 4);
        memcpy(first_key + 4, secret, secret_len);
    } else {
        SHA256_CTX ctx;
        SHA256_Init(&ctx);
        SHA256_Update(&ctx, "AWS4", 4);
        SHA256_Update(&ctx, secret, secret_len);
        SHA256_Final(first_key, &ctx);
        first_len = SHA256_LEN;
    }
    hmac_sha256(first_key, first_len, date, 8, k);
    OPENSSL_cleanse(first_key, sizeof first_key);
    hmac_sha256(k, SHA256_LEN, region, region_len, k);
    hmac_sha256(k, SHA256_LEN, service, service_len, k);
    hmac_sha256(k, SHA256_LEN, "aws4_request", 12, out);
}

static void
signing_key(const char *secret, size_t secret_len, const char *date, const char *region,
            size_t region_len, const char *service, size_t service_len,
            unsigned char out[SHA256_LEN])
{
    int i;
    struct signing_key *e;
    unsigned char fingerprint[SHA256_LEN];
    int cacheable =
        fits(region, region_len, sizeof e->region) && fits(service, service_len, sizeof e->service);

    sha256(secret, secret_len, fingerprint);
    if (cacheable) {
        for (i = 0; i < KEY_CACHE_SIZE; i++) {
            e = &key_cache[i];
            if (memcmp(e->date, date, 8) == 0 && strcmp(e->region, region) == 0 &&
                strcmp(e->service, service) == 0 &&
                memcmp(e->secret_fingerprint, fingerprint, SHA256_LEN) == 0) {
                memcpy(out, e->key, SHA256_LEN);
                return;
            }
        }
    }
    derive_signing_key(secret, secret_len, date, region, region_len, service, service_len, out);
    if (cacheable) {
        e = &key_cache[key_cache_next];
        key_cache_next = (key_cache_next + 1) % KEY_CACHE_SIZE;
        memcpy(e->secret_fingerprint, fingerprint, SHA256_LEN);
        memcpy(e->date, date, 8);
        e->date[8] = '\0';
        memcpy(e->region, region, region_len);
        e->region[region_len] = '\0';
        memcpy(e->service, service, service_len);
        e->service[service_len] = '\0';
        memcpy(e->key, out, SHA256_LEN);
    }
}

/* ---- URL pieces ---------------------------------------------------------- */

struct url_parts {
    const char *host; /* authority without userinfo, with port */
    size_t host_len;
    const char *path;
    size_t path_len;
    const char *query;
    size_t query_len;
};

/* The default port is dropped from the Host value, as curl does on the wire. */
static void
url_split(lua_State *L, const char *url, size_t len, struct url_parts *u)
{
    const char *end = url + len;
    const char *p = strstr(url, "://");
    const char *auth, *auth_end, *at, *q, *default_port;
    size_t dl;
    int https;

    if (p == NULL || p >= end)
        luaL_error(L, "sigv4.sign: url must be absolute (scheme://host/...)");
    https = (p - url == 5 && strncasecmp(url, "https", 5) == 0);
    default_port = https ? ":443" : ":80";
    dl = strlen(default_port);
    auth = p + 3;
    auth_end = auth;
    while (auth_end < end && *auth_end != '/' && *auth_end != '?' && *auth_end != '#')
        auth_end++;
    at = auth;
    for (q = auth; q < auth_end; q++)
        if (*q == '@')
            at = q + 1;
    u->host = at;
    u->host_len = (size_t)(auth_end - at);
    if (u->host_len == 0)
        luaL_error(L, "sigv4.sign: url has no host");
    /* Strip ":443" for https and ":80" for http. */
    if (u->host_len > dl && memcmp(auth_end - dl, default_port, dl) == 0)
        u->host_len -= dl;
    u->path = auth_end;
    q = auth_end;
    while (q < end && *q != '?' && *q != '#')
        q++;
    u->path_len = (size_t)(q - auth_end);
    if (q < end && *q == '?') {
        u->query = q + 1;
        while (q < end && *q != '#')
            q++;
        u->query_len = (size_t)(q - u->query);
    } else {
        u->query = q;
        u->query_len = 0;
    }
}

static int
is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static void
add_uri_encoded(luaL_Buffer *b, const char *s, size_t len, int keep_slash)
{
    size_t i;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            luaL_addchar(b, (char)c);
        } else {
            luaL_addchar(b, '%');
            luaL_addchar(b, hex_upper[c >> 4]);
            luaL_addchar(b, hex_upper[c & 15]);
        }
    }
}

static int
hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode %XX then encode strictly: "%7e", "~" and "%7E" all sign alike. */
static void
add_query_component(luaL_Buffer *b, const char *s, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%' && i + 2 < len && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
            c = (unsigned char)(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
            i += 2;
        }
        if (is_unreserved(c)) {
            luaL_addchar(b, (char)c);
        } else {
            luaL_addchar(b, '%');
            luaL_addchar(b, hex_upper[c >> 4]);
            luaL_addchar(b, hex_upper[c & 15]);
        }
    }
}

struct segment {
    const char *start;
    size_t len;
};

/* Pushes the canonical URI of `path`, the way botocore's normalize_url_path does it: RFC 3986
 * dot-segment removal, empty segments dropped, and a trailing slash kept only when the path
 * ends in "/" and something is left ("/a/." is "/a", "/a/.." is "/"). Each segment is then
 * encoded once more. Without `normalize` (S3), the path is encoded as it is. */
static void
push_canonical_uri(lua_State *L, const char *path, size_t len, int normalize)
{
    luaL_Buffer b;
    struct segment *segs;
    size_t nseg = 0, i = 0, slashes = 1;

    if (len == 0) {
        lua_pushliteral(L, "/");
        return;
    }
    if (!normalize) {
        luaL_buffinit(L, &b);
        add_uri_encoded(&b, path, len, 1);
        luaL_pushresult(&b);
        return;
    }
    for (i = 0; i < len; i++)
        slashes += path[i] == '/';
    segs = lua_newuserdatauv(L, slashes * sizeof *segs, 0);
    for (i = 0; i <= len; i++) {
        size_t j = i;
        while (j < len && path[j] != '/')
            j++;
        if (j - i == 2 && path[i] == '.' && path[i + 1] == '.') {
            if (nseg > 0)
                nseg--;
        } else if (j > i && !(j - i == 1 && path[i] == '.')) {
            segs[nseg].start = path + i;
            segs[nseg].len = j - i;
            nseg++;
        }
        i = j;
    }
    luaL_buffinit(L, &b);
    if (path[0] == '/')
        luaL_addchar(&b, '/');
    for (i = 0; i < nseg; i++) {
        if (i > 0)
            luaL_addchar(&b, '/');
        add_uri_encoded(&b, segs[i].start, segs[i].len, 0);
    }
    if (path[len - 1] == '/' && nseg > 0)
        luaL_addchar(&b, '/');
    luaL_pushresult(&b);
    lua_remove(L, -2); /* the segments */
}

/* ---- sorted lists of pairs ----------------------------------------------- */

struct pair {
    const char *name; /* points into a string kept on the Lua stack */
    size_t name_len;
    const char *value;
    size_t value_len;
};

static int
bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static int
pair_cmp(const void *pa, const void *pb)
{
    const struct pair *a = pa, *b = pb;
    int c = bytes_cmp(a->name, a->name_len, b->name, b->name_len);
    return c != 0 ? c : bytes_cmp(a->value, a->value_len, b->value, b->value_len);
}

/* Headers with the same name keep their given order (values are joined in
 * the order the request carries them), so they sort by name only, stably. */
static void
sort_by_name_stable(struct pair *p, size_t n)
{
    size_t i, j;
    for (i = 1; i < n; i++) {
        struct pair cur = p[i];
        for (j = i;
             j > 0 && bytes_cmp(p[j - 1].name, p[j - 1].name_len, cur.name, cur.name_len) > 0; j--)
            p[j] = p[j - 1];
        p[j] = cur;
    }
}

/* Pushes "k1=v1&k2=v2" sorted by encoded key, then encoded value. The
 * encoded pairs live in the table at `keep` while they are sorted. */
static void
push_canonical_query(lua_State *L, int keep, const char *q, size_t len)
{
    struct pair *pairs;
    size_t n = 0, i, count = 1;
    luaL_Buffer b;

    if (len == 0) {
        lua_pushliteral(L, "");
        return;
    }
    for (i = 0; i < len; i++)
        count += q[i] == '&';
    /* GC-owned, so an error while filling it leaks nothing. */
    pairs = lua_newuserdatauv(L, count * sizeof *pairs, 0);
    lua_rawseti(L, keep, (lua_Integer)lua_rawlen(L, keep) + 1);
    for (i = 0; i <= len; i++) {
        size_t j = i, eq, slen;
        const char *s;
        while (j < len && q[j] != '&')
            j++;
        if (j == i)
            continue;
        eq = i;
        while (eq < j && q[eq] != '=')
            eq++;
        luaL_buffinit(L, &b);
        add_query_component(&b, q + i, eq - i);
        luaL_addchar(&b, '=');
        if (eq < j)
            add_query_component(&b, q + eq + 1, j - eq - 1);
        luaL_pushresult(&b);
        s = lua_tolstring(L, -1, &slen);
        pairs[n].name = s;
        pairs[n].name_len = (size_t)((const char *)memchr(s, '=', slen) - s);
        pairs[n].value = s + pairs[n].name_len + 1;
        pairs[n].value_len = slen - pairs[n].name_len - 1;
        n++;
        lua_rawseti(L, keep, (lua_Integer)lua_rawlen(L, keep) + 1);
        i = j;
    }
    qsort(pairs, n, sizeof *pairs, pair_cmp);
    luaL_buffinit(L, &b);
    for (i = 0; i < n; i++) {
        if (i > 0)
            luaL_addchar(&b, '&');
        luaL_addlstring(&b, pairs[i].name, pairs[i].name_len + 1 + pairs[i].value_len);
    }
    luaL_pushresult(&b);
}

/* ---- headers ----------------------------------------------------------- */

static void
add_lower(luaL_Buffer *b, const char *s, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++)
        luaL_addchar(b, (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : s[i]);
}

/* What botocore's str.split() splits a header value on, within one byte: ASCII white space
 * and the separators 0x1c to 0x1f. */
static int
is_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* Trim, and fold every run of whitespace (including the line breaks of a
 * multi-line value) into one space. */
static void
add_trimmed_value(luaL_Buffer *b, const char *s, size_t len)
{
    size_t i = 0;
    int pending_space = 0, started = 0;
    for (; i < len; i++) {
        if (is_space(s[i])) {
            pending_space = started;
        } else {
            if (pending_space)
                luaL_addchar(b, ' ');
            pending_space = 0;
            started = 1;
            luaL_addchar(b, s[i]);
        }
    }
}

/* Headers this function computes itself; a caller's copy is not signed (the caller replaces
 * it with ours). A caller's x-amz-content-sha256 is signed as given unless sign_body. */
static int
is_reserved_header(const char *lower, size_t len, int sign_body)
{
    return (len == 13 && memcmp(lower, "authorization", 13) == 0) ||
           (len == 10 && memcmp(lower, "x-amz-date", 10) == 0) ||
           (len == 20 && memcmp(lower, "x-amz-security-token", 20) == 0) ||
           (sign_body && len == 20 && memcmp(lower, "x-amz-content-sha256", 20) == 0);
}

/* Pushes the normalised value of the header at stack index `value`: a string,
 * or a list of strings for a header repeated on the wire (joined by ",").
 * Numbers are taken as their text. The text of every item is pushed before
 * the buffer starts, so a string Lua converts from a number stays on the
 * stack, alive, until it has been copied. */
static void
push_header_value(lua_State *L, int value, const char *name)
{
    luaL_Buffer b;
    lua_Integer i, n = 1;
    int first;

    value = lua_absindex(L, value);
    first = lua_gettop(L) + 1;
    if (lua_type(L, value) == LUA_TTABLE) {
        n = luaL_len(L, value);
        luaL_checkstack(L, (int)(n < 1000000 ? n : 1000000) + LUA_MINSTACK, "sigv4.sign: header");
        for (i = 1; i <= n; i++) {
            lua_geti(L, value, i);
            if (lua_tostring(L, -1) == NULL)
                luaL_error(L, "sigv4.sign: header '%s' value %d is not a string", name, (int)i);
        }
    } else {
        lua_pushvalue(L, value);
        if (lua_tostring(L, -1) == NULL)
            luaL_error(L, "sigv4.sign: header '%s' value is not a string", name);
    }
    luaL_buffinit(L, &b);
    for (i = 0; i < n; i++) {
        size_t len;
        const char *s = lua_tolstring(L, first + (int)i, &len);
        if (i > 0)
            luaL_addchar(&b, ',');
        add_trimmed_value(&b, s, len);
    }
    luaL_pushresult(&b);
    lua_replace(L, first);
    lua_settop(L, first);
}

struct sign_input {
    const char *method;
    struct url_parts url;
    const char *body;
    size_t body_len;
    const char *region, *service, *access_key, *secret, *token;
    size_t region_len, service_len, access_key_len, secret_len, token_len;
    time_t when;
    int normalize, sign_body, omit_token;
    int headers; /* stack index of the headers table, 0 if none */
};

/* The field's text, left on the stack: a number is converted there, and the
 * converted string lives only as long as that stack slot does. */
static const char *
field_string(lua_State *L, int t, const char *key, size_t *len, int required)
{
    const char *s;
    lua_getfield(L, t, key);
    s = lua_tolstring(L, -1, len);
    if (s == NULL && required)
        luaL_error(L, "sigv4.sign: field '%s' must be a string", key);
    return s;
}

static int
field_bool(lua_State *L, int t, const char *key, int dflt)
{
    int v;
    if (lua_getfield(L, t, key) == LUA_TNIL)
        v = dflt;
    else
        v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static void
read_sign_input(lua_State *L, struct sign_input *in)
{
    size_t url_len;
    const char *url;

    luaL_checktype(L, 1, LUA_TTABLE);
    in->method = field_string(L, 1, "method", NULL, 1);
    url = field_string(L, 1, "url", &url_len, 1);
    url_split(L, url, url_len, &in->url);
    in->body = field_string(L, 1, "body", &in->body_len, 0);
    if (in->body == NULL) {
        in->body = "";
        in->body_len = 0;
    }
    in->region = field_string(L, 1, "region", &in->region_len, 1);
    in->service = field_string(L, 1, "service", &in->service_len, 1);
    in->normalize = field_bool(L, 1, "normalize", 1);
    in->sign_body = field_bool(L, 1, "sign_body", 0);
    in->omit_token = field_bool(L, 1, "omit_session_token", 0);

    lua_getfield(L, 1, "time");
    if (!lua_toboolean(L, -1)) {
        in->when = time(NULL);
    } else {
        int ok;
        lua_Number t = lua_tonumberx(L, -1, &ok);
        if (!ok)
            luaL_error(L, "sigv4.sign: field 'time' must be a number");
        in->when = (time_t)t;
    }
    lua_pop(L, 1);

    if (lua_getfield(L, 1, "credentials") != LUA_TTABLE)
        luaL_error(L, "sigv4.sign: field 'credentials' must be a table");
    in->access_key = field_string(L, -1, "access_key_id", &in->access_key_len, 1);
    in->secret = field_string(L, -2, "secret_access_key", &in->secret_len, 1);
    lua_getfield(L, -3, "session_token");
    /* nil, false or atlas.null all mean "no token" */
    in->token = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &in->token_len) : NULL;

    lua_getfield(L, 1, "headers");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        in->headers = 0;
    } else {
        luaL_argcheck(L, lua_istable(L, -1), 1, "field 'headers' must be a table");
        in->headers = lua_gettop(L);
    }
}

static void
add_pair(struct pair *p, const char *name, size_t name_len, const char *value, size_t value_len)
{
    p->name = name;
    p->name_len = name_len;
    p->value = value;
    p->value_len = value_len;
}

/* Fills `pairs` with the caller's headers (lower-cased, values normalised,
 * strings anchored in the table at `keep`) plus host, x-amz-date,
 * x-amz-content-sha256 and the token. Returns the count. */
static size_t
collect_headers(lua_State *L, int keep, const struct sign_input *in, const char *amz_date,
                const char *payload_hash, struct pair *pairs)
{
    size_t n = 0, len;
    int have_host = 0;
    luaL_Buffer b;

    if (in->headers) {
        lua_pushnil(L);
        while (lua_next(L, in->headers) != 0) {
            const char *name, *lower, *value;
            size_t lower_len, value_len;
            if (lua_type(L, -2) != LUA_TSTRING)
                luaL_error(L, "sigv4.sign: header names must be strings");
            name = lua_tolstring(L, -2, &len);
            luaL_buffinit(L, &b);
            add_lower(&b, name, len);
            luaL_pushresult(&b);
            lower = lua_tolstring(L, -1, &lower_len);
            lua_rawseti(L, keep, (lua_Integer)lua_rawlen(L, keep) + 1);
            if (!is_reserved_header(lower, lower_len, in->sign_body)) {
                push_header_value(L, -1, name);
                value = lua_tolstring(L, -1, &value_len);
                lua_rawseti(L, keep, (lua_Integer)lua_rawlen(L, keep) + 1);
                add_pair(&pairs[n++], lower, lower_len, value, value_len);
                have_host |= lower_len == 4 && memcmp(lower, "host", 4) == 0;
            }
            lua_pop(L, 1);
        }
    }
    if (!have_host)
        add_pair(&pairs[n++], "host", 4, in->url.host, in->url.host_len);
    add_pair(&pairs[n++], "x-amz-date", 10, amz_date, 16);
    if (in->sign_body)
        add_pair(&pairs[n++], "x-amz-content-sha256", 20, payload_hash, 64);
    if (in->token && !in->omit_token)
        add_pair(&pairs[n++], "x-amz-security-token", 20, in->token, in->token_len);
    return n;
}

static int
same_name(const struct pair *a, const struct pair *b)
{
    return bytes_cmp(a->name, a->name_len, b->name, b->name_len) == 0;
}

/* Pushes "host;my-header;x-amz-date" from sorted pairs. */
static void
push_signed_headers(lua_State *L, const struct pair *p, size_t n)
{
    luaL_Buffer b;
    size_t i;
    luaL_buffinit(L, &b);
    for (i = 0; i < n; i++) {
        if (i > 0 && same_name(&p[i - 1], &p[i]))
            continue;
        if (i > 0)
            luaL_addchar(&b, ';');
        luaL_addlstring(&b, p[i].name, p[i].name_len);
    }
    luaL_pushresult(&b);
}

/* Appends "name:value\n" lines from sorted pairs, equal names joined by ",". */
static void
add_canonical_headers(luaL_Buffer *b, const struct pair *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (i > 0 && same_name(&p[i - 1], &p[i])) {
            luaL_addchar(b, ',');
        } else {
            if (i > 0)
                luaL_addchar(b, '\n');
            luaL_addlstring(b, p[i].name, p[i].name_len);
            luaL_addchar(b, ':');
        }
        luaL_addlstring(b, p[i].value, p[i].value_len);
    }
    luaL_addchar(b, '\n');
}

static void
add_string_at(luaL_Buffer *b, lua_State *L, int idx)
{
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    luaL_addlstring(b, s, len);
}

/* Pushes the canonical request; stack on entry ends with uri, query, signed. */
static void
push_canonical_request(lua_State *L, const struct sign_input *in, const struct pair *p, size_t n,
                       const char *payload_hash)
{
    int signed_idx = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, in->method);
    luaL_addchar(&b, '\n');
    add_string_at(&b, L, signed_idx - 2);
    luaL_addchar(&b, '\n');
    add_string_at(&b, L, signed_idx - 1);
    luaL_addchar(&b, '\n');
    add_canonical_headers(&b, p, n);
    luaL_addchar(&b, '\n');
    add_string_at(&b, L, signed_idx);
    luaL_addchar(&b, '\n');
    luaL_addlstring(&b, payload_hash, 64);
    luaL_pushresult(&b);
}

/* Pushes "AWS4-HMAC-SHA256\n<date>\n<scope>\n<hash of canonical request>". */
static void
push_string_to_sign(lua_State *L, const struct sign_input *in, const char *amz_date,
                    const char *canonical, size_t canonical_len)
{
    char canonical_hash[64];
    luaL_Buffer b;
    sha256_hex(canonical, canonical_len, canonical_hash);
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "AWS4-HMAC-SHA256\n");
    luaL_addlstring(&b, amz_date, 16);
    luaL_addchar(&b, '\n');
    luaL_addlstring(&b, amz_date, 8);
    luaL_addchar(&b, '/');
    luaL_addlstring(&b, in->region, in->region_len);
    luaL_addchar(&b, '/');
    luaL_addlstring(&b, in->service, in->service_len);
    luaL_addstring(&b, "/aws4_request\n");
    luaL_addlstring(&b, canonical_hash, 64);
    luaL_pushresult(&b);
}

static void
push_authorization(lua_State *L, const struct sign_input *in, const char *amz_date,
                   const char *signed_headers, size_t signed_len, const char *signature)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "AWS4-HMAC-SHA256 Credential=");
    luaL_addlstring(&b, in->access_key, in->access_key_len);
    luaL_addchar(&b, '/');
    luaL_addlstring(&b, amz_date, 8);
    luaL_addchar(&b, '/');
    luaL_addlstring(&b, in->region, in->region_len);
    luaL_addchar(&b, '/');
    luaL_addlstring(&b, in->service, in->service_len);
    luaL_addstring(&b, "/aws4_request, SignedHeaders=");
    luaL_addlstring(&b, signed_headers, signed_len);
    luaL_addstring(&b, ", Signature=");
    luaL_addlstring(&b, signature, 64);
    luaL_pushresult(&b);
}

static size_t
count_headers(lua_State *L, int headers)
{
    size_t count = 0;
    if (headers == 0)
        return 0;
    lua_pushnil(L);
    while (lua_next(L, headers) != 0) {
        lua_pop(L, 1);
        count++;
    }
    return count;
}

/* sign{method, url, headers, body, region, service, time, credentials,
 *      normalize=true, sign_body=false, omit_session_token=false}
 * -> headers_to_add, {canonical_request=, string_to_sign=, signature=, signed_headers=} */
static int
l_sign(lua_State *L)
{
    struct sign_input in;
    struct tm tm;
    char amz_date[17], payload_hash[64], signature[64];
    unsigned char key[SHA256_LEN], mac[SHA256_LEN];
    struct pair *pairs;
    size_t n, count, canonical_len, sts_len, signed_len;
    const char *canonical, *sts, *signed_headers;
    int keep;

    read_sign_input(L, &in);
    if (gmtime_r(&in.when, &tm) == NULL ||
        strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm) != 16)
        return luaL_error(L, "sigv4.sign: time out of range");
    sha256_hex(in.body, in.body_len, payload_hash);

    lua_createtable(L, 8, 0);
    keep = lua_gettop(L);
    count = count_headers(L, in.headers) + 4;
    pairs = lua_newuserdatauv(L, count * sizeof *pairs, 0);
    lua_rawseti(L, keep, (lua_Integer)lua_rawlen(L, keep) + 1);
    n = collect_headers(L, keep, &in, amz_date, payload_hash, pairs);
    sort_by_name_stable(pairs, n);

    push_canonical_uri(L, in.url.path, in.url.path_len, in.normalize);
    push_canonical_query(L, keep, in.url.query, in.url.query_len);
    push_signed_headers(L, pairs, n);
    signed_headers = lua_tolstring(L, -1, &signed_len);
    push_canonical_request(L, &in, pairs, n, payload_hash);
    canonical = lua_tolstring(L, -1, &canonical_len);
    push_string_to_sign(L, &in, amz_date, canonical, canonical_len);
    sts = lua_tolstring(L, -1, &sts_len);

    signing_key(in.secret, in.secret_len, amz_date, in.region, in.region_len, in.service,
                in.service_len, key);
    hmac_sha256(key, SHA256_LEN, sts, sts_len, mac);
    hex_encode(mac, SHA256_LEN, signature);

    /* stack: ... signed canonical sts */
    lua_createtable(L, 0, 4);
    push_authorization(L, &in, amz_date, signed_headers, signed_len, signature);
    lua_setfield(L, -2, "Authorization");
    lua_pushlstring(L, amz_date, 16);
    lua_setfield(L, -2, "X-Amz-Date");
    if (in.token) {
        lua_pushlstring(L, in.token, in.token_len);
        lua_setfield(L, -2, "X-Amz-Security-Token");
    }
    if (in.sign_body) {
        lua_pushlstring(L, payload_hash, 64);
        lua_setfield(L, -2, "X-Amz-Content-Sha256");
    }

    lua_createtable(L, 0, 4);
    lua_pushvalue(L, -4);
    lua_setfield(L, -2, "canonical_request");
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "string_to_sign");
    lua_pushlstring(L, signature, 64);
    lua_setfield(L, -2, "signature");
    lua_pushvalue(L, -5);
    lua_setfield(L, -2, "signed_headers");
    return 2;
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
    size_t len, i;
    const char *s = luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, 2 * len);
    for (i = 0; i < len; i++) {
        out[2 * i] = hex_digits[(unsigned char)s[i] >> 4];
        out[2 * i + 1] = hex_digits[(unsigned char)s[i] & 15];
    }
    luaL_pushresultsize(&b, 2 * len);
    return 1;
}

int
luaopen_atlas_sigv4(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"sign", l_sign},
        {"sha256_hex", l_sha256_hex},
        {"hmac_sha256", l_hmac_sha256},
        {"hex", l_hex},
        {NULL, NULL},
    };
    luaL_newlib(L, funcs);
    return 1;
}
