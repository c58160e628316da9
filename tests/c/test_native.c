/*
 * C unit tests for the statically linked native modules (atlas.json and
 * atlas.sys), driven through the Lua C API the way the host drives them.
 * Each check prints its name; the program exits non-zero on any failure.
 */
#include "atlas.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int luaopen_atlas_json(lua_State *L);
int luaopen_atlas_sys(lua_State *L);
int luaopen_atlas_xml(lua_State *L);

int
atlas_interrupted(void)
{
    return 0;
}

void
atlas_suspend_interrupt(int suspended)
{
    (void)suspended;
}

static int failures = 0;
static int passes = 0;

static void
check(int ok, const char *name)
{
    printf("%s %s\n", ok ? "ok  " : "FAIL", name);
    if (ok)
        passes++;
    else
        failures++;
}

static lua_State *
new_state(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "atlas.json", luaopen_atlas_json, 0);
    lua_pop(L, 1);
    luaL_requiref(L, "atlas.sys", luaopen_atlas_sys, 0);
    lua_pop(L, 1);
    return L;
}

/* Runs a Lua chunk that returns a boolean; the check passes on true. */
static void
check_lua(lua_State *L, const char *code, const char *name)
{
    int ok = luaL_dostring(L, code) == LUA_OK && lua_toboolean(L, -1);
    if (!ok && lua_isstring(L, -1))
        fprintf(stderr, "  %s\n", lua_tostring(L, -1));
    lua_settop(L, 0);
    check(ok, name);
}

static void
test_decode_never_crashes(lua_State *L)
{
    /* Random byte strings, biased toward JSON punctuation, must each give
     * a value or an error, never a crash or a leak of the Lua stack. */
    const char alphabet[] = "{}[]\",:0123456789.eE+-tfnrua\\ \n\x00\xff";
    char buf[64];
    srand(7);
    int decoded = 0, refused = 0;
    for (int i = 0; i < 20000; i++) {
        size_t n = (size_t)(rand() % (int)sizeof buf);
        for (size_t k = 0; k < n; k++)
            buf[k] = alphabet[rand() % (int)(sizeof alphabet - 1)];
        lua_getglobal(L, "require");
        lua_pushliteral(L, "atlas.json");
        lua_call(L, 1, 1);
        lua_getfield(L, -1, "decode");
        lua_pushlstring(L, buf, n);
        if (lua_pcall(L, 1, 3, 0) != LUA_OK)
            ; /* wire data never raises: counted as neither */
        else if (!lua_isnil(L, -3))
            decoded++;
        else if (lua_isstring(L, -2) && strncmp(lua_tostring(L, -2), "line ", 5) == 0 &&
                 lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "malformed") == 0)
            refused++;
        lua_settop(L, 0);
    }
    /* Every input either decodes or is refused: nil, a positioned message, "malformed". */
    check(decoded + refused == 20000 && decoded > 0 && refused > 0,
          "json.decode survives 20000 random inputs");
}

static void
test_json(lua_State *L)
{
    check_lua(L,
              "local j = require 'atlas.json'\n"
              "return j.encode(j.decode('{\"a\":[],\"b\":{},\"c\":[null]}')) == "
              "'{\"a\":[],\"b\":{},\"c\":[null]}'",
              "decoded empty arrays and objects keep their kind");
    check_lua(L,
              "local j = require 'atlas.json'\n"
              "local v, err, code = j.decode('[1,\\n2,,3]')\n"
              "return v == nil and err:find('^line 2 column 3: ') ~= nil and code == 'malformed'",
              "decode refuses malformed text with nil, line and column, 'malformed'");
    check_lua(L,
              "local j = require 'atlas.json'\n"
              "return j.decode('null') == j.null and j.encode({j.null}) == '[null]'",
              "null sentinel round-trips");
    check_lua(L,
              "local j = require 'atlas.json'\n"
              "return j.encode(math.maxinteger) == '9223372036854775807'",
              "64-bit integers keep every digit");
    test_decode_never_crashes(L);
}

static void
test_sys(lua_State *L)
{
    char dir[] = "/tmp/atlas-c-test.XXXXXX";
    if (mkdtemp(dir) == NULL) {
        check(0, "mkdtemp");
        return;
    }
    lua_pushstring(L, dir);
    lua_setglobal(L, "DIR");
    check_lua(L,
              "local sys = require 'atlas.sys'\n"
              "assert(sys.write_atomic(DIR .. '/f', 'one'))\n"
              "assert(sys.write_atomic(DIR .. '/f', 'two'))\n"
              "local f = io.open(DIR .. '/f'); local s = f:read('a'); f:close()\n"
              "return s == 'two' and sys.stat(DIR .. '/f').mode == 384",
              "write_atomic replaces the file whole, mode 0600");
    check_lua(L,
              "local sys = require 'atlas.sys'\n"
              "local a = assert(sys.lock(DIR .. '/l', 'first holder'))\n"
              "local b, holder, code = sys.lock(DIR .. '/l', 'second')\n"
              "a:release(); a:release()\n"
              "local c = sys.lock(DIR .. '/l', 'third')\n"
              "return b == nil and holder == 'first holder' and code == 'held' and c ~= nil",
              "lock is exclusive, names its holder and releases idempotently");
    check_lua(L,
              "local sys = require 'atlas.sys'\n"
              "local pid = assert(sys.spawn({'sh', '-c', 'exit 7'}))\n"
              "local done, code = sys.wait(pid)\n"
              "return done and code == 7",
              "spawn and wait report the exit code");
    check_lua(L,
              "local sys = require 'atlas.sys'\n"
              "local t0 = sys.monotime(); sys.sleep(0.05)\n"
              "return sys.monotime() - t0 >= 0.05",
              "sleep waits at least as long as asked");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", dir);
}

/* A fresh parser has no text buffer yet: an element without text as the first document
 * once computed NULL + 0, which UBSan reports (issue 11). Runs in its own Lua state so
 * that no earlier document has allocated the buffer. */
static void
test_xml_first_document_without_text(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "atlas.xml", luaopen_atlas_xml, 0);
    lua_pop(L, 1);
    check_lua(L,
              "local xml = require 'atlas.xml'\n"
              "local root = assert(xml.parse('<a><b/></a>'))\n"
              "return root.tag == 'a' and root[1].tag == 'b' and root.text == nil",
              "xml: a first document without any text parses");
    lua_close(L);
}

int
main(void)
{
    lua_State *L = new_state();
    test_json(L);
    test_sys(L);
    test_xml_first_document_without_text();
    lua_close(L);
    printf("%d passed, %d failed\n", passes, failures);
    return failures == 0 ? 0 : 1;
}
