/*
 * atlas-run host: one Lua state, the native modules preloaded, the atlas
 * Lua library embedded, and everything run through one protected call.
 *
 * The host decides nothing about playbooks: it hands argv to atlas.cli and
 * exits with the number that module returns. Only a failure of the host
 * itself (no memory, a broken embedded library) is reported here.
 */
#include "atlas.h"

#include <dlfcn.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Exit code for a failure that is atlas-run's fault, not the playbook's
 * (EX_SOFTWARE from sysexits.h), so monitoring can tell them apart. */
#define EXIT_INTERNAL 70

static volatile sig_atomic_t interrupted_flag = 0;
static int interrupt_suspended = 0;
static lua_State *signal_state = NULL;

int
atlas_interrupted(void)
{
    return interrupted_flag != 0 && !interrupt_suspended;
}

/* --rollback's undo may still call out after Ctrl-C: while it runs, native
 * waits (curl, libpq, sleep) are not cut short. A second Ctrl-C still ends
 * the process (on_signal looks at the flag itself). */
void
atlas_suspend_interrupt(int suspended)
{
    interrupt_suspended = suspended;
}

/* Runs inside the interpreter at the next instruction after a signal:
 * raising here is safe, raising in the signal handler is not. */
static void
interrupt_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "interrupted");
    lua_setfield(L, -2, "kind");
    lua_pushliteral(L, "interrupted");
    lua_setfield(L, -2, "code");
    lua_pushliteral(L, "interrupted by signal");
    lua_setfield(L, -2, "message");
    /* atlas.errors registers its metatable here, giving the object a
     * readable __tostring; without it the plain table still carries kind. */
    if (luaL_getmetatable(L, "atlas.error") == LUA_TTABLE)
        lua_setmetatable(L, -2);
    else
        lua_pop(L, 1);
    lua_error(L);
}

static void
on_signal(int sig)
{
    if (interrupted_flag) {
        /* A second Ctrl-C means "now": the default action ends the process. */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    interrupted_flag = 1;
    if (signal_state != NULL)
        lua_sethook(signal_state, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void
install_signal_handlers(lua_State *L)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    signal_state = L;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Message handler for the one protected call: keeps error objects intact
 * (atlas.cli formats them) and adds a traceback to everything else. */
static int
message_handler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Loads the embedded source of a module, or a file from ATLAS_LUA_PATH when
 * that is set (development: edit lua/ without rebuilding). */
static int
load_from_dev_path(lua_State *L, const char *name)
{
    const char *root = getenv("ATLAS_LUA_PATH");
    if (root == NULL || *root == '\0')
        return 0;
    const char *relative = luaL_gsub(L, name, ".", "/");
    const char *candidates[] = {"%s/%s.lua", "%s/%s/init.lua"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        const char *path = lua_pushfstring(L, candidates[i], root, relative);
        FILE *f = fopen(path, "r");
        if (f != NULL) {
            fclose(f);
            if (luaL_loadfile(L, path) != LUA_OK)
                return luaL_error(L, "error loading module '%s' from '%s':\n\t%s", name, path,
                                  lua_tostring(L, -1));
            lua_pushstring(L, path);
            return 2;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

/* Finds a module in ATLAS_LUA_PATH or compiled in: pushes its loader and
 * where it came from (2), or nothing (0). */
static int
find_module(lua_State *L, const char *name)
{
    int found = load_from_dev_path(L, name);
    if (found)
        return found;
    for (const struct atlas_embedded *m = atlas_embedded_lua; m->name != NULL; m++) {
        if (strcmp(m->name, name) != 0)
            continue;
        const char *chunkname = lua_pushfstring(L, "@lua/%s", m->path);
        if (luaL_loadbuffer(L, m->source, m->size, chunkname) != LUA_OK)
            return luaL_error(L, "error loading embedded module '%s':\n\t%s", name,
                              lua_tostring(L, -1));
        lua_pushstring(L, chunkname + 1);
        return 2;
    }
    return 0;
}

/* The loader of a short name: requires the full one, so both names share one
 * module table (package.loaded holds it once, under the full name). */
static int
alias_loader(lua_State *L)
{
    lua_getglobal(L, "require");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_call(L, 1, 1);
    return 1;
}

/* package.searchers entry: finds atlas modules compiled into the binary.
 * Playbooks require the service helpers by short, stable names
 * ("atlas.ecs"); they live in lua/atlas/services/, so a one-part name that
 * is no module of its own resolves there. */
static int
embedded_searcher(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    int found = find_module(L, name);
    if (found)
        return found;
    if (strncmp(name, "atlas.", 6) == 0 && strchr(name + 6, '.') == NULL) {
        const char *full = lua_pushfstring(L, "atlas.services.%s", name + 6);
        int top = lua_gettop(L);
        if (find_module(L, full)) {
            lua_settop(L, top);
            lua_pushcclosure(L, alias_loader, 1);
            lua_pushstring(L, full);
            return 2;
        }
        lua_pop(L, 1);
    }
    lua_pushfstring(L, "no embedded module '%s'", name);
    return 1;
}

/* require "atlas.embedded" -> sorted list of the module names compiled in,
 * so `atlas-run scenarios` can list what ships without a filesystem. */
static int
embedded_list(lua_State *L)
{
    lua_newtable(L);
    int n = 0;
    for (const struct atlas_embedded *m = atlas_embedded_lua; m->name != NULL; m++) {
        lua_pushstring(L, m->name);
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

/* Opens engine module `name` from atlas_<name>.so beside the binary (build
 * tree) or in ../lib/atlas-run (installed), and returns its luaopen. */
static lua_CFunction
open_lazy_module(lua_State *L, const char *name)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        luaL_error(L, "atlas.%s: cannot find the atlas-run binary", name);
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    *slash = '\0';
    const char *layouts[] = {"%s/atlas_%s.so", "%s/../lib/atlas-run/atlas_%s.so"};
    luaL_Buffer errors_seen;
    luaL_buffinit(L, &errors_seen);
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        const char *path = lua_pushfstring(L, layouts[i], exe, name);
        void *handle = dlopen(path, RTLD_LAZY | RTLD_LOCAL);
        lua_pop(L, 1);
        if (handle == NULL) {
            luaL_addstring(&errors_seen, "\n\t");
            luaL_addstring(&errors_seen, dlerror());
            continue;
        }
        const char *symbol = lua_pushfstring(L, "luaopen_atlas_%s", name);
        lua_CFunction open = (lua_CFunction)dlsym(handle, symbol);
        lua_pop(L, 1);
        if (open != NULL)
            return open;
        luaL_addstring(&errors_seen, "\n\tno luaopen in ");
        luaL_addstring(&errors_seen, path);
    }
    luaL_pushresult(&errors_seen);
    luaL_error(L, "atlas.%s: cannot load its module:%s", name, lua_tostring(L, -1));
    return NULL;
}

/* package.preload entry of a lazily loaded module; upvalue 1 is its name. */
static int
lazy_module_loader(lua_State *L)
{
    lua_CFunction open = open_lazy_module(L, lua_tostring(L, lua_upvalueindex(1)));
    lua_pushcfunction(L, open);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    return 1;
}

static void
install_modules(lua_State *L)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (const luaL_Reg *r = atlas_native_modules; r->name != NULL; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    for (const char *const *name = atlas_lazy_modules; *name != NULL; name++) {
        lua_pushfstring(L, "atlas.%s", *name);
        lua_pushstring(L, *name);
        lua_pushcclosure(L, lazy_module_loader, 1);
        lua_settable(L, -3);
    }
    lua_pushcfunction(L, embedded_list);
    lua_setfield(L, -2, "atlas.embedded");
    lua_pop(L, 1);

    /* Insert after the preload searcher, before the filesystem ones, so the
     * shipped library wins over stray files but team modules still load. */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchers");
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = n; i >= 2; i--) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, embedded_searcher);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 2);
}

/* Protected body: require atlas.cli and return cli.main(argv). */
static int
run_cli(lua_State *L)
{
    int argc = (int)lua_tointeger(L, 1);
    char **argv = (char **)lua_touserdata(L, 2);
    lua_settop(L, 0);
    luaL_openlibs(L);
    install_modules(L);

    lua_getglobal(L, "require");
    lua_pushliteral(L, "atlas.run.cli");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "main");
    luaL_checkstack(L, argc + 1, "too many arguments");
    lua_createtable(L, argc, 1);
    lua_pushstring(L, argv[0]);
    lua_rawseti(L, -2, 0);
    for (int i = 1; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_call(L, 1, 1);
    return 1;
}

int
main(int argc, char **argv)
{
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        fprintf(stderr, "atlas-run: cannot create the Lua state: out of memory\n");
        return EXIT_INTERNAL;
    }
    install_signal_handlers(L);

    lua_pushcfunction(L, message_handler);
    lua_pushcfunction(L, run_cli);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    int status = lua_pcall(L, 2, 1, 1);

    int code;
    if (status != LUA_OK) {
        fprintf(stderr, "atlas-run: internal error: %s\n", lua_tostring(L, -1));
        code = EXIT_INTERNAL;
    } else {
        code = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
    }
    fflush(stdout);
    lua_close(L);
    return code;
}
