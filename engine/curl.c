/*
 * atlas.curl: HTTP(S) for the AWS layer and atlas.http, on libcurl.
 *
 * One multi handle per Lua state serves every call, single or concurrent, so the
 * connection pool (keep-alive) is shared by all of them; a CURLSH adds the DNS cache and
 * TLS session cache. Easy handles and their buffers are kept in slots and reused, so a
 * call allocates almost nothing once warm.
 *
 * Outside failures are data: `nil, message, code, sent`. `sent` is false only when the
 * request certainly never left: we learn that from CURLOPT_PREREQFUNCTION, which libcurl
 * calls after connecting (and after the TLS handshake) and just before it writes the
 * request. The AWS layer uses `sent` to decide whether a non-idempotent call may be retried.
 *
 * Which urls may be fetched (plain http only to loopback) is policy, and lives in Lua
 * (atlas.net), which every caller goes through. The one safety rule kept here is that
 * libcurl speaks http and https only (CURLOPT_PROTOCOLS_STR).
 */
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "atlas.h"

#define STATE_MT "atlas.curl.state"
#define DEFAULT_TIMEOUT_MS 60000L
#define DEFAULT_CONNECT_TIMEOUT_MS 10000L
/* How long the transfer loop sleeps at most before looking at Ctrl-C again. */
#define POLL_MS 100
#define MAX_RESPONSE (512u * 1024u * 1024u)
/* Buffers above this size are released after a call instead of kept for the next. */
#define KEEP_BUFFER (256u * 1024u)

struct buffer {
    char *data;
    size_t len, cap;
};

/* One request in flight (or ready for the next). */
struct transfer {
    CURL *easy;
    char *default_ca; /* libcurl's built-in CA bundle, restored after a ca_file request */
    int custom_ca;
    struct curl_slist *headers;
    struct buffer body;
    struct buffer head; /* header lines of the final response */
    char error[CURL_ERROR_SIZE];
    int request_started; /* PREREQFUNCTION ran: bytes may have reached the server */
    int in_multi;
    int interrupted;
    int too_large;
    CURLcode result;
};

struct curl_state {
    CURLM *multi; /* NULL when closed */
    CURLSH *share;
    struct transfer **slots;
    size_t nslots;
    lua_Integer connects, reuses, requests;
};

/* ---- state ------------------------------------------------------------- */

static void
buffer_free(struct buffer *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Keeps the capacity for the next call unless it grew large. */
static void
buffer_recycle(struct buffer *b)
{
    if (b->cap > KEEP_BUFFER)
        buffer_free(b);
    b->len = 0;
}

/* Appends for a libcurl callback: the bytes taken, or 0 to fail the transfer. A response
 * over MAX_RESPONSE is refused rather than exhausting memory. */
static size_t
buffer_append(struct transfer *t, struct buffer *b, const char *s, size_t len)
{
    if (t->body.len + t->head.len + len > MAX_RESPONSE) {
        t->too_large = 1;
        return 0;
    }
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;
        while (cap < b->len + len)
            cap *= 2;
        if ((p = realloc(b->data, cap)) == NULL)
            return 0;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, len);
    b->len += len;
    return len;
}

static void
transfer_detach(struct curl_state *st, struct transfer *t)
{
    if (t->in_multi) {
        curl_multi_remove_handle(st->multi, t->easy);
        t->in_multi = 0;
    }
}

/* __gc, __close: frees every handle; safe to call twice. */
static int
state_close(lua_State *L)
{
    struct curl_state *st = luaL_checkudata(L, 1, STATE_MT);
    size_t i;
    for (i = 0; i < st->nslots; i++) {
        struct transfer *t = st->slots[i];
        if (st->multi != NULL)
            transfer_detach(st, t);
        if (t->easy != NULL)
            curl_easy_cleanup(t->easy);
        curl_slist_free_all(t->headers);
        free(t->default_ca);
        buffer_free(&t->body);
        buffer_free(&t->head);
        free(t);
    }
    free(st->slots);
    st->slots = NULL;
    st->nslots = 0;
    if (st->multi != NULL) {
        curl_multi_cleanup(st->multi);
        st->multi = NULL;
    }
    if (st->share != NULL) {
        curl_share_cleanup(st->share);
        st->share = NULL;
    }
    return 0;
}

static struct curl_state *
get_state(lua_State *L)
{
    struct curl_state *st = lua_touserdata(L, lua_upvalueindex(1));
    if (st->multi == NULL)
        luaL_error(L, "atlas.curl: closed");
    return st;
}

/* Makes sure `n` slots exist; each makes its easy handle on first use (slot_easy). */
static void
ensure_slots(lua_State *L, struct curl_state *st, size_t n)
{
    if (n > st->nslots) {
        struct transfer **slots = realloc(st->slots, n * sizeof *slots);
        if (slots == NULL)
            luaL_error(L, "atlas.curl: out of memory");
        st->slots = slots;
        while (st->nslots < n) {
            struct transfer *t = calloc(1, sizeof *t);
            if (t == NULL)
                luaL_error(L, "atlas.curl: out of memory");
            st->slots[st->nslots++] = t;
        }
    }
}

/* A previous call that raised midway may have left handles in the multi. */
static void
detach_all(struct curl_state *st)
{
    size_t i;
    for (i = 0; i < st->nslots; i++)
        transfer_detach(st, st->slots[i]);
}

/* ---- callbacks (no Lua in here: a longjmp through libcurl is not allowed) ---- */

static size_t
on_body(char *data, size_t size, size_t n, void *ud)
{
    struct transfer *t = ud;
    return buffer_append(t, &t->body, data, size * n);
}

static size_t
on_header(char *data, size_t size, size_t n, void *ud)
{
    struct transfer *t = ud;
    size_t len = size * n;
    /* A new status line starts a new response (after 100 Continue, say). */
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0)
        t->head.len = 0;
    return buffer_append(t, &t->head, data, len);
}

/* Sockets are close-on-exec: a child started by sys.spawn (a server in a test, a
 * credential_process) must not inherit our keep-alive connections and hold them open. */
static curl_socket_t
on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *addr)
{
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

static int
on_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    ((struct transfer *)ud)->request_started = 1;
    return CURL_PREREQFUNC_OK;
}

/* ---- request options ----------------------------------------------------- */

struct request_opts {
    const char *method;
    const char *url;
    const char *body;
    size_t body_len;
    long timeout_ms, connect_timeout_ms;
    int fresh_connect;   /* a request that must not be sent twice: see prepare() */
    const char *ca_file; /* another trust anchor (AWS_CA_BUNDLE); verification stays on */
    int headers;         /* stack index of the headers table, 0 if none */
};

static long
field_ms(lua_State *L, int t, const char *key, long dflt)
{
    long ms = dflt;
    if (lua_getfield(L, t, key) != LUA_TNIL) {
        int ok;
        lua_Number s = lua_tonumberx(L, -1, &ok);
        if (!ok || !(s > 0)) /* also refuses NaN */
            luaL_error(L, "atlas.curl: field '%s' must be a positive number of seconds", key);
        ms = s > 1e9 ? 1000000000000L : (long)(s * 1000.0 + 0.5);
        if (ms < 1)
            ms = 1;
    }
    lua_pop(L, 1);
    return ms;
}

/* Letters only: a method goes into the request line verbatim. */
static int
is_method_token(const char *m)
{
    const char *p = m;
    while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
        p++;
    return p != m && *p == '\0' && p - m <= 16;
}

/* The string field `key` of the table at `t`, or `dflt` when absent. Only real strings are
 * taken: the pointer stays valid because the request table keeps the string alive (a number
 * converted on the stack would not be). */
static const char *
field_string(lua_State *L, int t, const char *key, const char *dflt, size_t *len)
{
    const char *s = dflt;
    int type = lua_getfield(L, t, key);
    if (type == LUA_TSTRING)
        s = lua_tolstring(L, -1, len);
    else if (type != LUA_TNIL)
        luaL_error(L, "atlas.curl: field '%s' must be a string", key);
    lua_pop(L, 1);
    return s;
}

/* Reads the request table at `idx`; raises on misuse. Leaves the headers table (if any) on
 * the stack for set_headers; the caller restores the top. */
static void
read_request(lua_State *L, int idx, struct request_opts *o)
{
    luaL_argcheck(L, lua_istable(L, idx), idx, "request must be a table");
    o->url = field_string(L, idx, "url", NULL, NULL);
    if (o->url == NULL)
        luaL_error(L, "atlas.curl: field 'url' must be a string");
    o->method = field_string(L, idx, "method", "GET", NULL);
    if (!is_method_token(o->method))
        luaL_error(L, "atlas.curl: field 'method' must be an HTTP method name");
    o->body_len = 0;
    o->body = field_string(L, idx, "body", NULL, &o->body_len);
    /* an empty body on a GET is no body: no Content-Length: 0 on the wire */
    if (o->body != NULL && o->body_len == 0 &&
        (strcmp(o->method, "GET") == 0 || strcmp(o->method, "HEAD") == 0))
        o->body = NULL;
    o->ca_file = field_string(L, idx, "ca_file", NULL, NULL);
    o->timeout_ms = field_ms(L, idx, "timeout", DEFAULT_TIMEOUT_MS);
    o->connect_timeout_ms = field_ms(L, idx, "connect_timeout", DEFAULT_CONNECT_TIMEOUT_MS);
    lua_getfield(L, idx, "fresh_connect");
    o->fresh_connect = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "headers") == LUA_TNIL) {
        o->headers = 0;
        lua_pop(L, 1);
    } else {
        if (!lua_istable(L, -1))
            luaL_error(L, "atlas.curl: field 'headers' must be a table");
        o->headers = lua_gettop(L);
    }
}

static void
append_header(lua_State *L, struct transfer *t, const char *line)
{
    struct curl_slist *l = curl_slist_append(t->headers, line);
    if (l == NULL)
        luaL_error(L, "atlas.curl: out of memory");
    t->headers = l;
}

/* CR, LF or NUL in a header would split or truncate it on the wire. */
static int
bad_header_text(const char *s, size_t len)
{
    return memchr(s, '\r', len) != NULL || memchr(s, '\n', len) != NULL ||
           memchr(s, '\0', len) != NULL;
}

/* Builds the header list in t->headers (owned by the slot, so a raise leaks nothing). */
static void
set_headers(lua_State *L, struct transfer *t, int headers, int has_body)
{
    int has_content_type = 0;
    if (headers) {
        lua_pushnil(L);
        while (lua_next(L, headers) != 0) {
            size_t nlen, vlen;
            const char *name, *value;
            if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
                luaL_error(L, "atlas.curl: headers must map names to strings");
            name = lua_tolstring(L, -2, &nlen);
            value = lua_tolstring(L, -1, &vlen);
            if (nlen == 0 || bad_header_text(name, nlen) || bad_header_text(value, vlen) ||
                memchr(name, ':', nlen))
                luaL_error(L, "atlas.curl: header '%s' contains a line break, NUL or colon", name);
            has_content_type |= nlen == 12 && strncasecmp(name, "content-type", 12) == 0;
            /* "Name;" is curl's way to send an empty value; no NUL inside, so %s copies whole */
            append_header(L, t,
                          vlen ? lua_pushfstring(L, "%s: %s", name, value)
                               : lua_pushfstring(L, "%s;", name));
            lua_pop(L, 2);
        }
    }
    /* No 100-continue round trip; and no form Content-Type the caller did not ask for. */
    append_header(L, t, "Expect:");
    if (has_body && !has_content_type)
        append_header(L, t, "Content-Type:");
}

/* The handle keeps the previous request's options: HTTPGET resets POST and NOBODY, and
 * CUSTOMREQUEST is cleared, before this request's method is applied. */
static void
set_method(CURL *e, const struct request_opts *o)
{
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
    if (strcmp(o->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(o->method, "GET") != 0 || o->body != NULL) {
        if (o->body != NULL || strcmp(o->method, "POST") == 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, o->body ? o->body : "");
        }
        if (strcmp(o->method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method);
    }
}

/* The slot's easy handle, created once with the options every request shares. Keeping it
 * (rather than curl_easy_reset per call) saves measurable CPU per request. */
static CURL *
slot_easy(lua_State *L, struct curl_state *st, struct transfer *t)
{
    CURL *e = t->easy;
    if (e != NULL)
        return e;
    if ((e = curl_easy_init()) == NULL)
        luaL_error(L, "atlas.curl: out of memory");
    t->easy = e;
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_SHARE, st->share);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "atlas-run/" ATLAS_VERSION);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
    {
        char *ca = NULL;
        if (curl_easy_getinfo(e, CURLINFO_CAINFO, &ca) == CURLE_OK && ca != NULL &&
            (t->default_ca = strdup(ca)) == NULL)
            luaL_error(L, "atlas.curl: out of memory");
    }
    return e;
}

/* Prepares slot `t` for the request table at `idx`. */
static void
prepare(lua_State *L, struct curl_state *st, struct transfer *t, int idx)
{
    struct request_opts o;
    int top = lua_gettop(L);
    CURL *e;

    read_request(L, idx, &o);
    t->request_started = t->interrupted = t->too_large = 0;
    t->result = CURLE_OK;
    t->error[0] = '\0';
    buffer_recycle(&t->body);
    buffer_recycle(&t->head);
    curl_slist_free_all(t->headers);
    t->headers = NULL;
    e = slot_easy(L, st, t);
    set_headers(L, t, o.headers, o.body != NULL);
    lua_settop(L, top);
    curl_easy_setopt(e, CURLOPT_URL, o.url);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o.timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    /* libcurl sends a request again, silently, when a reused keep-alive connection closes
     * before any byte of the answer: the server may have acted on the first copy (it read the
     * request, then the connection dropped). A request that changes something must go out
     * once per attempt the caller makes, so it never takes a reused connection, and libcurl
     * only re-sends on reused ones. Reads keep the pool. */
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, o.fresh_connect ? 1L : 0L);
    if (o.ca_file != NULL || t->custom_ca)
        curl_easy_setopt(e, CURLOPT_CAINFO, o.ca_file ? o.ca_file : t->default_ca);
    t->custom_ca = o.ca_file != NULL;
    set_method(e, &o);
}

/* ---- running ------------------------------------------------------------- */

static void
finish(struct curl_state *st, struct transfer *t, CURLcode result)
{
    long connects = 0;
    t->result = result;
    transfer_detach(st, t);
    curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects);
    st->requests++;
    st->connects += connects;
    if (result == CURLE_OK && connects == 0)
        st->reuses++;
}

/* Runs the prepared transfers to completion, concurrently, watching for Ctrl-C. */
static void
run(lua_State *L, struct curl_state *st, struct transfer **ts, size_t n)
{
    size_t i, pending = 0;
    int running;
    CURLMsg *msg;
    int left;
    atlas_wait wait = atlas_wait_start();

    for (i = 0; i < n; i++) {
        if (curl_multi_add_handle(st->multi, ts[i]->easy) != CURLM_OK)
            luaL_error(L, "atlas.curl: cannot add transfer");
        ts[i]->in_multi = 1;
        pending++;
    }
    while (pending > 0) {
        if (curl_multi_perform(st->multi, &running) != CURLM_OK)
            luaL_error(L, "atlas.curl: transfer loop failed");
        while ((msg = curl_multi_info_read(st->multi, &left)) != NULL) {
            struct transfer *t;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
            finish(st, t, msg->data.result);
            pending--;
        }
        if (pending == 0)
            break;
        if (atlas_wait_interrupted(&wait)) {
            for (i = 0; i < n; i++) {
                if (ts[i]->in_multi) {
                    ts[i]->interrupted = 1;
                    finish(st, ts[i], CURLE_ABORTED_BY_CALLBACK);
                }
            }
            break;
        }
        if (curl_multi_poll(st->multi, NULL, 0, POLL_MS, NULL) != CURLM_OK)
            luaL_error(L, "atlas.curl: poll failed");
    }
}

/* ---- results -------------------------------------------------------------- */

static const char *
error_code(const struct transfer *t)
{
    if (t->interrupted)
        return "interrupted";
    switch (t->result) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return "dns";
    case CURLE_COULDNT_CONNECT:
        return "connect";
    case CURLE_OPERATION_TIMEDOUT:
        /* a resolver that never answers is a DNS failure, not a slow service */
        return strncmp(t->error, "Resolving timed out", 19) == 0 ? "dns" : "timeout";
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return "reset";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_USE_SSL_FAILED:
        return "tls";
    default:
        return "other";
    }
}

static void
push_error_message(lua_State *L, const struct transfer *t)
{
    if (t->interrupted)
        lua_pushliteral(L, "interrupted");
    else if (t->too_large)
        lua_pushliteral(L, "response too large");
    else if (t->error[0] != '\0')
        lua_pushstring(L, t->error);
    else
        lua_pushstring(L, curl_easy_strerror(t->result));
}

static int
is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Pushes {lower-case name = value}; repeated names are joined with ", ". */
static void
push_headers(lua_State *L, const struct buffer *head)
{
    const char *p = head->data, *end = head->data + head->len;
    char name[256];
    /* AWS responses carry 6 to 12 headers; sized once, no rehash */
    lua_createtable(L, 0, 16);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        size_t nlen, i;
        if (colon != NULL && colon > p && !is_space(*p) && (size_t)(colon - p) < sizeof name) {
            const char *v = colon + 1, *ve = line_end;
            nlen = (size_t)(colon - p);
            for (i = 0; i < nlen; i++)
                name[i] = (p[i] >= 'A' && p[i] <= 'Z') ? (char)(p[i] + 32) : p[i];
            while (v < ve && is_space(*v))
                v++;
            while (ve > v && (is_space(ve[-1]) || ve[-1] == '\r'))
                ve--;
            lua_pushlstring(L, name, nlen);
            lua_pushvalue(L, -1);
            if (lua_rawget(L, -3) == LUA_TSTRING) {
                lua_pushliteral(L, ", ");
                lua_pushlstring(L, v, (size_t)(ve - v));
                lua_concat(L, 3);
            } else {
                lua_pop(L, 1);
                lua_pushlstring(L, v, (size_t)(ve - v));
            }
            lua_rawset(L, -3);
        }
        p = line_end + 1;
    }
}

static void
push_response(lua_State *L, const struct transfer *t)
{
    long status = 0;
    curl_off_t total_us = 0;
    long connects = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &total_us);
    curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    push_headers(L, &t->head);
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, t->body.data ? t->body.data : "", t->body.len);
    lua_setfield(L, -2, "body");
    lua_pushnumber(L, (lua_Number)total_us / 1e6);
    lua_setfield(L, -2, "elapsed");
    lua_pushboolean(L, connects == 0);
    lua_setfield(L, -2, "reused");
}

/* Pushes what request returns for a finished transfer: the response, or nil, message,
 * code, sent. Returns the number of values. */
static int
push_result(lua_State *L, const struct transfer *t)
{
    if (t->result == CURLE_OK) {
        push_response(L, t);
        return 1;
    }
    lua_pushnil(L);
    push_error_message(L, t);
    lua_pushstring(L, error_code(t));
    lua_pushboolean(L, t->request_started);
    return 4;
}

/* request{method, url, headers, body, timeout, connect_timeout, ca_file, fresh_connect}
 * -> {status, headers, body, elapsed, reused} | nil, message, code, sent */
static int
l_request(lua_State *L)
{
    struct curl_state *st = get_state(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    detach_all(st);
    ensure_slots(L, st, 1);
    prepare(L, st, st->slots[0], 1);
    run(L, st, st->slots, 1);
    return push_result(L, st->slots[0]);
}

/* request_many{req1, req2, ...} -> {{response} | {nil, message, code, sent}, ...}: entry i
 * holds, packed, what request(req_i) returns. The requests run concurrently, so the wall
 * time is that of the slowest. */
static int
l_request_many(lua_State *L)
{
    struct curl_state *st = get_state(L);
    size_t n, i;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    n = (size_t)luaL_len(L, 1);
    detach_all(st);
    ensure_slots(L, st, n);
    for (i = 0; i < n; i++) {
        lua_geti(L, 1, (lua_Integer)i + 1);
        prepare(L, st, st->slots[i], 2);
        lua_pop(L, 1);
    }
    run(L, st, st->slots, n);
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
        int k, count;
        lua_createtable(L, 4, 0);
        count = push_result(L, st->slots[i]);
        for (k = count; k >= 1; k--)
            lua_rawseti(L, -1 - k, k); /* pops the values from the top down */
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* stats() -> {connects=, reuses=, requests=} since the module was loaded */
static int
l_stats(lua_State *L)
{
    struct curl_state *st = get_state(L);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, st->connects);
    lua_setfield(L, -2, "connects");
    lua_pushinteger(L, st->reuses);
    lua_setfield(L, -2, "reuses");
    lua_pushinteger(L, st->requests);
    lua_setfield(L, -2, "requests");
    return 1;
}

int
luaopen_atlas_curl(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"request", l_request},
        {"request_many", l_request_many},
        {"stats", l_stats},
        {NULL, NULL},
    };
    static const luaL_Reg state_meta[] = {
        {"__gc", state_close},
        {"__close", state_close},
        {NULL, NULL},
    };
    struct curl_state *st;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return luaL_error(L, "atlas.curl: libcurl failed to initialise");
    luaL_newlibtable(L, funcs);
    st = lua_newuserdatauv(L, sizeof *st, 0);
    memset(st, 0, sizeof *st);
    if (luaL_newmetatable(L, STATE_MT))
        luaL_setfuncs(L, state_meta, 0);
    lua_setmetatable(L, -2);
    /* created closed above; acquire now, so a failure leaks nothing. (The multi handle's
     * wakeup socketpair is inherited by children; harmless: only curl_multi_wakeup, which
     * we never call, writes to it. The connections, which matter, are close-on-exec.) */
    st->share = curl_share_init();
    st->multi = curl_multi_init();
    if (st->share == NULL || st->multi == NULL)
        return luaL_error(L, "atlas.curl: out of memory");
    curl_share_setopt(st->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(st->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_multi_setopt(st->multi, CURLMOPT_MAXCONNECTS, 32L);
    luaL_setfuncs(L, funcs, 1);
    return 1;
}
