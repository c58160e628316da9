/*
 * Shared declarations of the atlas-run host and its native modules.
 * Modules stay independent: this header only names what the host provides.
 */
#ifndef ATLAS_H
#define ATLAS_H

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#ifndef ATLAS_VERSION
#define ATLAS_VERSION "0.1.0"
#endif

/* True once SIGINT or SIGTERM arrived. Blocking native calls (curl, libpq,
 * sleep) poll it so that Ctrl-C interrupts a wait instead of being queued
 * behind it. Defined by the host; test programs define their own. */
int atlas_interrupted(void);

/* How every native wait (a curl transfer, a libpq connect or statement, a sleep, waitpid)
 * treats Ctrl-C. A wait starts with atlas_wait_start() and asks atlas_wait_interrupted()
 * each time it wakes: only an interrupt that arrives while it waits cuts it short. One that
 * came before means the run is already ending and this wait belongs to its cleanup (an undo,
 * a rollback), which may finish; a second Ctrl-C ends the process (main.c). */
typedef struct {
    int pending_at_start;
} atlas_wait;

static inline atlas_wait
atlas_wait_start(void)
{
    atlas_wait w = {atlas_interrupted()};
    return w;
}

static inline int
atlas_wait_interrupted(const atlas_wait *w)
{
    return !w->pending_at_start && atlas_interrupted();
}

/* While suspended, atlas_interrupted() reports false: the one exception to
 * "Ctrl-C is final" is --rollback's undo, which must be able to finish. */
void atlas_suspend_interrupt(int suspended);

/* The one null sentinel: a light userdata holding NULL. Every module that
 * returns data pushes this, so JSON null and SQL NULL compare equal. */
#define atlas_pushnull(L) lua_pushlightuserdata((L), NULL)

struct atlas_embedded {
    const char *name; /* module name, as given to require */
    const char *path; /* path under lua/, for chunk names */
    const char *source;
    size_t size;
};

extern const struct atlas_embedded atlas_embedded_lua[];
extern const luaL_Reg atlas_native_modules[];
/* Modules built as loadable objects (atlas_<name>.so), opened on first require. */
extern const char *const atlas_lazy_modules[];

#endif
