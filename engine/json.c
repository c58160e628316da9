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

/* json.decode(text) -> value | nil, "line L column C: msg", "malformed". Text that is not
 * JSON is the outside world's failure, as in atlas.xml; a non-string argument raises. */
static int
module_decode(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
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
    {"object", module_object}, {"is_array", module_is_array}, {NULL, NULL},
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
