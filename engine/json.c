/*
 * atlas.json: JSON on jansson, with the one null sentinel of atlas.
 *
 * Tables have no array/object type of their own, so the kind is decided
 * the same way every time:
 *   - a table whose metatable is json.array_mt or json.object_mt has that
 *     kind (decode sets them, so decoded values round-trip, empty included);
 *   - otherwise an empty table is an object, a table with exactly the keys
 *     1..n is an array, and any other table is an object.
 */
#include "atlas.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define ARRAY_MT "atlas.json.array"
#define OBJECT_MT "atlas.json.object"
#define DOCUMENT_MT "atlas.json.document"
#define MAX_DEPTH 1000

/* Encoding never raises while it owns jansson values: it records the first
 * problem here, and the caller raises after releasing them. */
typedef struct {
    char message[200];
} EncodeError;

static json_t *to_json(lua_State *L, int index, int depth, EncodeError *err);

static int
has_metatable(lua_State *L, int index, const char *name)
{
    if (!lua_getmetatable(L, index))
        return 0;
    luaL_getmetatable(L, name);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same;
}

/* The array length when the table holds exactly the keys 1..n, else -1. */
static lua_Integer
sequence_length(lua_State *L, int index)
{
    lua_Integer count = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, index) != 0) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            lua_pop(L, 1);
            return -1;
        }
        lua_Integer k = lua_tointeger(L, -1);
        if (k > max)
            max = k;
        count++;
    }
    return count == max ? max : -1;
}

static json_t *
array_to_json(lua_State *L, int index, lua_Integer n, int depth, EncodeError *err)
{
    json_t *array = json_array();
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, index, i);
        json_t *item = to_json(L, lua_gettop(L), depth + 1, err);
        lua_pop(L, 1);
        if (item == NULL) {
            json_decref(array);
            return NULL;
        }
        json_array_append_new(array, item);
    }
    return array;
}

static json_t *
object_to_json(lua_State *L, int index, int depth, EncodeError *err)
{
    json_t *object = json_object();
    lua_pushnil(L);
    while (lua_next(L, index) != 0) {
        int keytype = lua_type(L, -2);
        int pushed = 1; /* the value; a converted numeric key adds one */
        if (keytype == LUA_TNUMBER) {
            /* Convert a copy: converting the key in place breaks lua_next. */
            lua_pushvalue(L, -2);
            lua_tostring(L, -1);
            lua_insert(L, -2);
            pushed = 2;
        } else if (keytype != LUA_TSTRING) {
            snprintf(err->message, sizeof err->message, "cannot encode a table key of type %s",
                     lua_typename(L, keytype));
            lua_pop(L, 2);
            json_decref(object);
            return NULL;
        }
        size_t keylen;
        const char *key = lua_tolstring(L, -2, &keylen);
        json_t *value = to_json(L, lua_gettop(L), depth + 1, err);
        if (value == NULL || json_object_setn_new(object, key, keylen, value) != 0) {
            if (value != NULL)
                snprintf(err->message, sizeof err->message, "invalid UTF-8 in a key");
            lua_pop(L, pushed + 1);
            json_decref(object);
            return NULL;
        }
        lua_pop(L, pushed);
    }
    return object;
}

static json_t *
table_to_json(lua_State *L, int index, int depth, EncodeError *err)
{
    if (depth > MAX_DEPTH || !lua_checkstack(L, 8)) {
        snprintf(err->message, sizeof err->message, "nesting deeper than %d (a cycle?)", MAX_DEPTH);
        return NULL;
    }
    if (has_metatable(L, index, ARRAY_MT))
        return array_to_json(L, index, (lua_Integer)lua_rawlen(L, index), depth, err);
    if (has_metatable(L, index, OBJECT_MT))
        return object_to_json(L, index, depth, err);
    lua_Integer n = sequence_length(L, index);
    if (n > 0)
        return array_to_json(L, index, n, depth, err);
    return object_to_json(L, index, depth, err);
}

static json_t *
to_json(lua_State *L, int index, int depth, EncodeError *err)
{
    switch (lua_type(L, index)) {
    case LUA_TNIL:
        return json_null();
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, index));
    case LUA_TNUMBER:
        if (lua_isinteger(L, index))
            return json_integer((json_int_t)lua_tointeger(L, index));
        if (!isfinite(lua_tonumber(L, index))) {
            snprintf(err->message, sizeof err->message, "cannot encode %s (not a JSON number)",
                     lua_tostring(L, index));
            return NULL;
        }
        return json_real(lua_tonumber(L, index));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, index, &len);
        json_t *str = json_stringn(s, len);
        if (str == NULL)
            snprintf(err->message, sizeof err->message, "invalid UTF-8 in a string");
        return str;
    }
    case LUA_TTABLE:
        return table_to_json(L, index, depth, err);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, index) == NULL)
            return json_null();
        /* fall through */
    default:
        snprintf(err->message, sizeof err->message, "cannot encode a value of type %s",
                 luaL_typename(L, index));
        return NULL;
    }
}

/* json.encode(value, {indent=n, sort=true}) -> string; raises on values JSON
 * cannot hold (functions, NaN, invalid UTF-8, cycles). */
static int
module_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    size_t flags = JSON_ENCODE_ANY | JSON_REAL_PRECISION(17);
    int sort = 1, indent = 0;
    if (lua_istable(L, 2)) {
        if (lua_getfield(L, 2, "sort") != LUA_TNIL)
            sort = lua_toboolean(L, -1);
        if (lua_getfield(L, 2, "indent") == LUA_TNUMBER)
            indent = (int)lua_tointeger(L, -1);
        else if (lua_toboolean(L, -1))
            indent = 2;
        lua_pop(L, 2);
    }
    /* Sorted keys make output stable, so diffs, logs and tests can rely on it. */
    if (sort)
        flags |= JSON_SORT_KEYS;
    flags |= indent > 0 ? JSON_INDENT(indent > 31 ? 31 : indent) : JSON_COMPACT;

    EncodeError err = {{0}};
    lua_settop(L, 1);
    json_t *root = to_json(L, 1, 0, &err);
    if (root == NULL)
        return luaL_error(L, "json: %s", err.message);
    char *text = json_dumps(root, flags);
    json_decref(root);
    if (text == NULL)
        return luaL_error(L, "json: cannot encode (out of memory)");
    lua_pushstring(L, text);
    free(text);
    return 1;
}

static void
push_json(lua_State *L, json_t *value)
{
    luaL_checkstack(L, 4, "json: nesting too deep");
    switch (json_typeof(value)) {
    case JSON_OBJECT: {
        lua_createtable(L, 0, (int)json_object_size(value));
        const char *key;
        size_t keylen;
        json_t *item;
        json_object_keylen_foreach(value, key, keylen, item)
        {
            lua_pushlstring(L, key, keylen);
            push_json(L, item);
            lua_rawset(L, -3);
        }
        luaL_setmetatable(L, OBJECT_MT);
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(value);
        lua_createtable(L, (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            push_json(L, json_array_get(value, i));
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        luaL_setmetatable(L, ARRAY_MT);
        break;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(value), json_string_length(value));
        break;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(value));
        break;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(value));
        break;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    case JSON_NULL:
        atlas_pushnull(L);
        break;
    }
}

typedef struct {
    json_t *root;
} Document;

/* Frees a parsed document if converting it raised; safe to call twice. */
static int
document_release(lua_State *L)
{
    Document *doc = luaL_checkudata(L, 1, DOCUMENT_MT);
    if (doc->root != NULL) {
        json_decref(doc->root);
        doc->root = NULL;
    }
    return 0;
}

/* The reference decoder: jansson's parse, then its tree into Lua. It gives the positioned
 * message for text that is not JSON, and the value of anything the direct reader below
 * leaves to it. */
static int
decode_with_jansson(lua_State *L, const char *text, size_t len)
{
    Document *doc = lua_newuserdatauv(L, sizeof *doc, 0);
    doc->root = NULL;
    luaL_setmetatable(L, DOCUMENT_MT);

    json_error_t error;
    doc->root = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
    if (doc->root == NULL) {
        luaL_pushfail(L);
        lua_pushfstring(L, "line %d column %d: %s", error.line, error.column, error.text);
        lua_pushliteral(L, "malformed");
        return 3;
    }
    push_json(L, doc->root);
    json_decref(doc->root);
    doc->root = NULL;
    return 1;
}

/* ---- the direct reader -------------------------------------------------------------
 * Parsing into jansson's tree and copying that into Lua was most of the CPU of an AWS call
 * above the transport (a 1.2 KB DescribeServices reply: 35 us, three quarters in jansson's
 * parser and the malloc/free of its tree). This reader builds the Lua values straight from
 * the text, for the JSON that replies are made of. Whatever it does not take on (malformed
 * text, bytes above 0x7f, \u escapes outside the BMP or of NUL, integers of 19 digits or
 * more, very deep nesting) it gives back, and decode runs jansson on the whole text, so the
 * values and messages stay jansson's. It never raises except for memory. */

#define FAST_MAX_DEPTH 200
#define FAST_MAX_DIGITS 18 /* below 10^18: no overflow check needed */

struct reader {
    const char *p, *end;
    char *scratch; /* room for an unescaped string; NULL when the text has no backslash */
    int array_mt, object_mt; /* stack slots of the two metatables */
};

static void
skip_space(struct reader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
        r->p++;
}

static int read_value(lua_State *L, struct reader *r, int depth);

static int
hex_value(const char *s)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* Unescapes the string body [s, e) into r->scratch; returns its length, or -1 to give up. */
static long
unescape(struct reader *r, const char *s, const char *e)
{
    char *out = r->scratch;
    while (s < e) {
        char c = *s++;
        if (c != '\\') {
            *out++ = c;
            continue;
        }
        switch (*s++) { /* the closing quote follows, so s < e here */
        case '"': *out++ = '"'; break;
        case '\\': *out++ = '\\'; break;
        case '/': *out++ = '/'; break;
        case 'b': *out++ = '\b'; break;
        case 'f': *out++ = '\f'; break;
        case 'n': *out++ = '\n'; break;
        case 'r': *out++ = '\r'; break;
        case 't': *out++ = '\t'; break;
        case 'u': {
            int u = e - s >= 4 ? hex_value(s) : -1;
            if (u <= 0 || (u >= 0xD800 && u <= 0xDFFF))
                return -1; /* NUL and surrogates: jansson's rules */
            s += 4;
            if (u < 0x80) {
                *out++ = (char)u;
            } else if (u < 0x800) {
                *out++ = (char)(0xC0 | (u >> 6));
                *out++ = (char)(0x80 | (u & 0x3F));
            } else {
                *out++ = (char)(0xE0 | (u >> 12));
                *out++ = (char)(0x80 | ((u >> 6) & 0x3F));
                *out++ = (char)(0x80 | (u & 0x3F));
            }
            break;
        }
        default:
            return -1;
        }
    }
    return out - r->scratch;
}

/* At the opening quote: pushes the string. (An escape is never longer than what it
 * stands for: "\u0800" is six bytes for three.) */
static int
read_string(lua_State *L, struct reader *r)
{
    const char *s = ++r->p, *p = s;
    int escaped = 0;
    for (;;) {
        if (p >= r->end)
            return 0;
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            break;
        if (c < 0x20 || c >= 0x80)
            return 0; /* control bytes are refused, UTF-8 is checked by jansson */
        if (c == '\\') {
            if (p + 1 >= r->end || r->scratch == NULL)
                return 0;
            escaped = 1;
            p++;
        }
        p++;
    }
    r->p = p + 1;
    if (!escaped) {
        lua_pushlstring(L, s, (size_t)(p - s));
        return 1;
    }
    long n = unescape(r, s, p);
    if (n < 0)
        return 0;
    lua_pushlstring(L, r->scratch, (size_t)n);
    return 1;
}

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? as jansson reads it: an integer when
 * there is neither fraction nor exponent, else a float. */
static int
read_number(lua_State *L, struct reader *r)
{
    const char *s = r->p, *p = s;
    int negative = 0, is_float = 0;
    if (p < r->end && *p == '-') {
        negative = 1;
        p++;
    }
    if (p >= r->end || !is_digit(*p))
        return 0;
    if (*p == '0') {
        p++;
        if (p < r->end && is_digit(*p))
            return 0;
    } else {
        while (p < r->end && is_digit(*p))
            p++;
    }
    const char *int_end = p;
    if (p < r->end && *p == '.') {
        is_float = 1;
        p++;
        if (p >= r->end || !is_digit(*p))
            return 0;
        while (p < r->end && is_digit(*p))
            p++;
    }
    if (p < r->end && (*p == 'e' || *p == 'E')) {
        is_float = 1;
        p++;
        if (p < r->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= r->end || !is_digit(*p))
            return 0;
        while (p < r->end && is_digit(*p))
            p++;
    }
    r->p = p;
    if (!is_float) {
        const char *d = s + negative;
        lua_Integer v = 0;
        if (int_end - d > FAST_MAX_DIGITS)
            return 0;
        for (; d < int_end; d++)
            v = v * 10 + (*d - '0');
        lua_pushinteger(L, negative ? -v : v);
        return 1;
    }
    /* the token alone, NUL-terminated: strtod must not read on into the text */
    char token[64];
    size_t n = (size_t)(p - s);
    if (n >= sizeof token || lua_stringtonumber(L, (memcpy(token, s, n), token[n] = '\0', token)) == 0)
        return 0;
    if (!lua_isinteger(L, -1) && isfinite(lua_tonumber(L, -1)))
        return 1;
    lua_pop(L, 1); /* overflow to inf: jansson's "real number overflow" */
    return 0;
}

static int
read_literal(lua_State *L, struct reader *r, const char *word, size_t len)
{
    if ((size_t)(r->end - r->p) < len || memcmp(r->p, word, len) != 0)
        return 0;
    r->p += len;
    if (word[0] == 'n')
        atlas_pushnull(L);
    else
        lua_pushboolean(L, word[0] == 't');
    return 1;
}

static int
read_array(lua_State *L, struct reader *r, int depth)
{
    lua_Integer n = 0;
    r->p++;
    lua_createtable(L, 4, 0);
    skip_space(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
    } else {
        for (;;) {
            if (!read_value(L, r, depth + 1))
                return 0;
            lua_rawseti(L, -2, ++n);
            skip_space(r);
            if (r->p >= r->end)
                return 0;
            if (*r->p == ']') {
                r->p++;
                break;
            }
            if (*r->p++ != ',')
                return 0;
            skip_space(r);
        }
    }
    lua_pushvalue(L, r->array_mt);
    lua_setmetatable(L, -2);
    return 1;
}

static int
read_object(lua_State *L, struct reader *r, int depth)
{
    r->p++;
    lua_createtable(L, 0, 4);
    skip_space(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
    } else {
        for (;;) {
            if (r->p >= r->end || *r->p != '"' || !read_string(L, r))
                return 0;
            skip_space(r);
            if (r->p >= r->end || *r->p++ != ':')
                return 0;
            skip_space(r);
            if (!read_value(L, r, depth + 1))
                return 0;
            lua_rawset(L, -3); /* a repeated key: the last one wins, as in jansson */
            skip_space(r);
            if (r->p >= r->end)
                return 0;
            if (*r->p == '}') {
                r->p++;
                break;
            }
            if (*r->p++ != ',')
                return 0;
            skip_space(r);
        }
    }
    lua_pushvalue(L, r->object_mt);
    lua_setmetatable(L, -2);
    return 1;
}

/* At a value (space skipped): pushes it and returns 1, or returns 0 to give up, leaving
 * whatever it pushed (the caller resets the stack). */
static int
read_value(lua_State *L, struct reader *r, int depth)
{
    if (r->p >= r->end || depth > FAST_MAX_DEPTH || !lua_checkstack(L, 4))
        return 0;
    switch (*r->p) {
    case '{': return read_object(L, r, depth);
    case '[': return read_array(L, r, depth);
    case '"': return read_string(L, r);
    case 't': return read_literal(L, r, "true", 4);
    case 'f': return read_literal(L, r, "false", 5);
    case 'n': return read_literal(L, r, "null", 4);
    default: return read_number(L, r);
    }
}

/* Pushes the value of the whole text and returns 1, or returns 0 with the stack as it was. */
static int
decode_direct(lua_State *L, const char *text, size_t len)
{
    int top = lua_gettop(L);
    struct reader r = {text, text + len, NULL, 0, 0};
    luaL_getmetatable(L, ARRAY_MT);
    r.array_mt = lua_gettop(L);
    luaL_getmetatable(L, OBJECT_MT);
    r.object_mt = lua_gettop(L);
    if (memchr(text, '\\', len) != NULL)
        r.scratch = lua_newuserdatauv(L, len, 0); /* garbage collected: nothing to free */
    skip_space(&r);
    if (read_value(L, &r, 0)) {
        skip_space(&r);
        if (r.p == r.end) {
            lua_replace(L, top + 1);
            lua_settop(L, top + 1);
            return 1;
        }
    }
    lua_settop(L, top);
    return 0;
}

/* json.decode(text) -> value | nil, "line L column C: msg", "malformed". Text that is not
 * JSON is the outside world's failure, as in atlas.xml; a non-string argument raises. */
static int
module_decode(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    if (decode_direct(L, text, len))
        return 1;
    return decode_with_jansson(L, text, len);
}

/* json.decode_reference(text): decode on jansson alone, for tests that hold the direct
 * reader to the same results. */
static int
module_decode_reference(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    return decode_with_jansson(L, text, len);
}

static int
mark_table(lua_State *L, const char *mt)
{
    if (lua_isnoneornil(L, 1))
        lua_newtable(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaL_setmetatable(L, mt);
    return 1;
}

/* json.array(t={}) -> t, which now always encodes as an array */
static int
module_array(lua_State *L)
{
    return mark_table(L, ARRAY_MT);
}

/* json.object(t={}) -> t, which now always encodes as an object */
static int
module_object(lua_State *L)
{
    return mark_table(L, OBJECT_MT);
}

/* json.is_array(t) -> true when t is marked as (or decoded from) an array */
static int
module_is_array(lua_State *L)
{
    lua_pushboolean(L, lua_istable(L, 1) && has_metatable(L, 1, ARRAY_MT));
    return 1;
}

static const luaL_Reg json_functions[] = {
    {"encode", module_encode}, {"decode", module_decode},     {"array", module_array},
    {"object", module_object}, {"is_array", module_is_array},
    {"decode_reference", module_decode_reference}, {NULL, NULL},
};

int
luaopen_atlas_json(lua_State *L)
{
    luaL_newmetatable(L, ARRAY_MT);
    luaL_newmetatable(L, OBJECT_MT);
    luaL_newmetatable(L, DOCUMENT_MT);
    lua_pushcfunction(L, document_release);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    luaL_newlib(L, json_functions);
    atlas_pushnull(L);
    lua_setfield(L, -2, "null");
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "array_mt");
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "object_mt");
    lua_remove(L, -2);
    lua_remove(L, -2);
    return 1;
}
