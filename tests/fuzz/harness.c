/*
 * One libFuzzer harness per parser of outside input, all built from this file: FUZZ_TARGET
 * names a script in tests/fuzz/targets/ that returns function(data). The engine's native
 * modules are in package.preload, the same luaopen entry points the binary uses, and
 * lua/ is on package.path, so a Lua-side parser runs the code atlas-run embeds.
 *
 * A target signals a broken property with fuzz.fail(message), which aborts (a crash to
 * libFuzzer). A Lua error is a refused input, which is fine, unless the target says otherwise.
 * replay.c gives the same harness a main() that runs a corpus, for CTest without libFuzzer.
 */
#include "atlas.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int luaopen_atlas_curl(lua_State *L);
int luaopen_atlas_json(lua_State *L);
int luaopen_atlas_pq(lua_State *L);
int luaopen_atlas_sigv4(lua_State *L);
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

static lua_State *state;

#ifdef ATLAS_LIBFUZZER
/* Lua's own code is not compiled with coverage, so libFuzzer would be blind to which branches
 * of a Lua parser an input reached. A line hook feeds it: each (chunk, previous line, line)
 * edge bumps a counter in libFuzzer's extra-counters section, which it reads as coverage. */
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t lua_edges[1 << 16];

static void
line_hook(lua_State *L, lua_Debug *ar)
{
    static uintptr_t previous;
    uintptr_t here;
    if (!lua_getinfo(L, "S", ar))
        return;
    here = (uintptr_t)ar->source * 2654435761u + (uintptr_t)ar->currentline;
    lua_edges[(here ^ (previous >> 1)) & ((1 << 16) - 1)]++;
    previous = here;
}
#endif

/* fuzz.fail(message): a broken property. Prints and aborts so libFuzzer keeps the input. */
static int
fuzz_fail(lua_State *L)
{
    fprintf(stderr, "fuzz property broken (%s): %s\n", FUZZ_TARGET, luaL_tolstring(L, 1, NULL));
    abort();
}

static void
preload(lua_State *L, const char *name, lua_CFunction open)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, open);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

static lua_State *
make_state(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    preload(L, "atlas.curl", luaopen_atlas_curl);
    preload(L, "atlas.json", luaopen_atlas_json);
    preload(L, "atlas.pq", luaopen_atlas_pq);
    preload(L, "atlas.sigv4", luaopen_atlas_sigv4);
    preload(L, "atlas.sys", luaopen_atlas_sys);
    preload(L, "atlas.xml", luaopen_atlas_xml);
    lua_getglobal(L, "package");
    lua_pushliteral(L, ATLAS_SOURCE_DIR "/lua/?.lua;" ATLAS_SOURCE_DIR "/lua/?/init.lua");
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, fuzz_fail);
    lua_setfield(L, -2, "fail");
    lua_setglobal(L, "fuzz");
    if (luaL_dofile(L, ATLAS_SOURCE_DIR "/tests/fuzz/targets/" FUZZ_TARGET ".lua") != LUA_OK ||
        !lua_isfunction(L, -1)) {
        fprintf(stderr, "fuzz target %s: %s\n", FUZZ_TARGET, lua_tostring(L, -1));
        abort();
    }
    lua_setfield(L, LUA_REGISTRYINDEX, "atlas.fuzz.target");
#ifdef ATLAS_LIBFUZZER
    lua_sethook(L, line_hook, LUA_MASKLINE, 0);
#endif
    return L;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (state == NULL)
        state = make_state();
    lua_getfield(state, LUA_REGISTRYINDEX, "atlas.fuzz.target");
    lua_pushlstring(state, (const char *)data, size);
    (void)lua_pcall(state, 1, 0, 0); /* an error is a refused input */
    lua_settop(state, 0);
    /* A full cycle now and then, so a value freed too early is found near its input. */
    lua_gc(state, LUA_GCSTEP, 0);
    return 0;
}
