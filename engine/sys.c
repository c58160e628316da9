/*
 * atlas.sys: the operating-system services Lua lacks: clocks, interruptible
 * sleep, processes, free ports, run locks, directories and atomic writes.
 */
#define _GNU_SOURCE /* close_range */
#include "atlas.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LOCK_MT "atlas.sys.lock"

extern char **environ;

static int
push_errno(lua_State *L, const char *what)
{
    int saved = errno;
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", what, strerror(saved));
    lua_pushinteger(L, saved);
    return 3;
}

/* sys.monotime() -> seconds from an arbitrary start, never going back */
static int
sys_monotime(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* sys.time() -> wall-clock Unix seconds, with fractions */
static int
sys_time(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* sys.sleep(seconds) -> true, or false when a Ctrl-C cut it short (atlas_wait).
 * Sleeps in slices so Ctrl-C during a long wait is seen within 100 ms. */
static int
sys_sleep(lua_State *L)
{
    lua_Number seconds = luaL_checknumber(L, 1);
    struct timespec start, now;
    atlas_wait wait = atlas_wait_start();
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (atlas_wait_interrupted(&wait)) {
            lua_pushboolean(L, 0);
            return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        double elapsed =
            (double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9;
        double left = seconds - elapsed;
        if (left <= 0)
            break;
        double slice = left < 0.1 ? left : 0.1;
        struct timespec ts = {(time_t)slice, (long)((slice - (time_t)slice) * 1e9)};
        nanosleep(&ts, NULL);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* sys.interrupted() -> true once SIGINT/SIGTERM arrived (false while suspended) */
static int
sys_interrupted(lua_State *L)
{
    lua_pushboolean(L, atlas_interrupted());
    return 1;
}

/* sys.suspend_interrupt(bool) -> nothing; while true, native waits ignore an
 * earlier Ctrl-C (for --rollback's undo) */
static int
sys_suspend_interrupt(lua_State *L)
{
    atlas_suspend_interrupt(lua_toboolean(L, 1));
    return 0;
}

/* sys.isatty(fd) -> boolean */
static int
sys_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

/* sys.term_width() -> columns of the terminal on stdout, or 80 */
static int
sys_term_width(lua_State *L)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        lua_pushinteger(L, ws.ws_col);
    else
        lua_pushinteger(L, 80);
    return 1;
}

/* sys.getpid() -> integer */
static int
sys_getpid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

/* sys.hostname() -> string */
static int
sys_hostname(lua_State *L)
{
    char name[256];
    if (gethostname(name, sizeof name) != 0)
        return push_errno(L, "gethostname");
    name[sizeof name - 1] = '\0';
    lua_pushstring(L, name);
    return 1;
}

/* sys.setenv(name, value|nil) -> true; nil unsets. For child processes. */
static int
sys_setenv(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    int rc = lua_isnoneornil(L, 2) ? unsetenv(name) : setenv(name, luaL_checkstring(L, 2), 1);
    if (rc != 0)
        return push_errno(L, "setenv");
    lua_pushboolean(L, 1);
    return 1;
}

static int
open_redirect(lua_State *L, int opts, const char *field, int flags)
{
    int fd = -1;
    if (lua_getfield(L, opts, field) == LUA_TSTRING)
        fd = open(lua_tostring(L, -1), flags | O_CLOEXEC, 0644);
    lua_pop(L, 1);
    return fd;
}

/* sys.spawn(argv, {stdout=path, stderr=path, stdin=path, env={K=V}})
 *   -> pid, or fail, message
 * The child gets its own process group, so kill(-pid) stops all it started. */
static int
sys_spawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int opts = lua_istable(L, 2) ? 2 : 0;
    lua_Integer argc = luaL_len(L, 1);
    luaL_argcheck(L, argc >= 1, 1, "argv needs a program");
    luaL_checkstack(L, (int)argc + 8, "too many arguments");
    const char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(argc + 1), 0);
    for (lua_Integer i = 1; i <= argc; i++) {
        lua_rawgeti(L, 1, i);
        argv[i - 1] = luaL_checkstring(L, -1); /* kept alive on the stack */
    }
    argv[argc] = NULL;

    int out = -1, err = -1, in = -1;
    if (opts) {
        out = open_redirect(L, opts, "stdout", O_WRONLY | O_CREAT | O_TRUNC);
        err = open_redirect(L, opts, "stderr", O_WRONLY | O_CREAT | O_TRUNC);
        in = open_redirect(L, opts, "stdin", O_RDONLY);
    }
    int has_env = opts && lua_getfield(L, opts, "env") == LUA_TTABLE;
    int env_index = lua_gettop(L);

    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        if (out >= 0)
            dup2(out, STDOUT_FILENO);
        if (err >= 0)
            dup2(err, STDERR_FILENO);
        if (in >= 0)
            dup2(in, STDIN_FILENO);
        /* The child gets stdio only: no database or AWS connection, no run
         * lock, leaks into a server a test or a playbook starts. */
        close_range(3, ~0U, 0);
        if (has_env) {
            lua_pushnil(L);
            while (lua_next(L, env_index) != 0) {
                if (lua_type(L, -2) == LUA_TSTRING) {
                    if (lua_type(L, -1) == LUA_TSTRING)
                        setenv(lua_tostring(L, -2), lua_tostring(L, -1), 1);
                    else if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))
                        unsetenv(lua_tostring(L, -2));
                }
                lua_pop(L, 1);
            }
        }
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "atlas-run: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int saved = errno;
    if (out >= 0)
        close(out);
    if (err >= 0)
        close(err);
    if (in >= 0)
        close(in);
    if (pid < 0) {
        errno = saved;
        return push_errno(L, "fork");
    }
    lua_pushinteger(L, (lua_Integer)pid);
    return 1;
}

static int
signal_number(lua_State *L, int arg)
{
    if (lua_type(L, arg) == LUA_TNUMBER)
        return (int)lua_tointeger(L, arg);
    const char *name = luaL_optstring(L, arg, "TERM");
    static const struct {
        const char *name;
        int number;
    } names[] = {{"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT},
                 {"HUP", SIGHUP},   {"STOP", SIGSTOP}, {"CONT", SIGCONT}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(names[i].name, name) == 0)
            return names[i].number;
    return luaL_argerror(L, arg, "unknown signal name");
}

/* sys.kill(pid, sig="TERM") -> true, or fail, message. A negative pid
 * signals the process group. */
static int
sys_kill(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    if (kill(pid, signal_number(L, 2)) != 0)
        return push_errno(L, "kill");
    lua_pushboolean(L, 1);
    return 1;
}

/* sys.wait(pid, nohang) -> exited, code; code is 128+signal when signalled */
static int
sys_wait(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    int status = 0;
    pid_t rc;
    atlas_wait wait = atlas_wait_start();
    do {
        rc = waitpid(pid, &status, lua_toboolean(L, 2) ? WNOHANG : 0);
    } while (rc < 0 && errno == EINTR && !atlas_wait_interrupted(&wait));
    if (rc < 0)
        return push_errno(L, "waitpid");
    if (rc == 0) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushboolean(L, 1);
    if (WIFEXITED(status))
        lua_pushinteger(L, WEXITSTATUS(status));
    else
        lua_pushinteger(L, 128 + WTERMSIG(status));
    return 2;
}

/* sys.free_port() -> a TCP port on 127.0.0.1 that was free a moment ago */
static int
sys_free_port(lua_State *L)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return push_errno(L, "socket");
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return push_errno(L, "bind");
    }
    close(fd);
    lua_pushinteger(L, ntohs(addr.sin_port));
    return 1;
}

/* sys.port_open(port) -> true when something accepts on 127.0.0.1:port */
static int
sys_port_open(lua_State *L)
{
    int port = (int)luaL_checkinteger(L, 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return push_errno(L, "socket");
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
    close(fd);
    lua_pushboolean(L, ok);
    return 1;
}

typedef struct {
    int fd;
} RunLock;

/* lock:release() -> nothing; also __gc and __close. Safe to call twice. */
static int
lock_release(lua_State *L)
{
    RunLock *lock = luaL_checkudata(L, 1, LOCK_MT);
    if (lock->fd >= 0) {
        flock(lock->fd, LOCK_UN);
        close(lock->fd);
        lock->fd = -1;
    }
    return 0;
}

/* sys.lock(path, note) -> lock, or fail, what the holder wrote, "held";
 * or fail, message, errno when the file cannot be opened or locked.
 * flock dies with the process, so a crashed run never leaves a stale lock. */
static int
sys_lock(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t note_len = 0;
    const char *note = luaL_optlstring(L, 2, "", &note_len);
    RunLock *lock = lua_newuserdatauv(L, sizeof *lock, 0);
    lock->fd = -1;
    luaL_setmetatable(L, LOCK_MT);

    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return push_errno(L, path);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int saved = errno;
        char holder[512];
        ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
        close(fd);
        if (saved != EWOULDBLOCK) {
            errno = saved;
            return push_errno(L, path);
        }
        luaL_pushfail(L);
        holder[n > 0 ? n : 0] = '\0';
        lua_pushstring(L, holder);
        lua_pushliteral(L, "held");
        return 3;
    }
    lock->fd = fd;
    if (ftruncate(fd, 0) == 0 && note_len > 0 && pwrite(fd, note, note_len, 0) < 0) {
        /* The note only helps the next user read who holds the lock;
         * the lock itself is already ours. */
    }
    return 1;
}

/* sys.readdir(path) -> sorted list of names (without . and ..) */
static int
sys_readdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR *dir = opendir(path);
    if (dir == NULL)
        return push_errno(L, path);
    lua_newtable(L);
    int n = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        lua_pushstring(L, entry->d_name);
        lua_rawseti(L, -2, ++n);
    }
    closedir(dir);
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, -3);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    return 1;
}

/* sys.stat(path, nofollow) -> {type="file"|"directory"|"link"|"other", size=, mtime=, mode=},
 * or fail; with nofollow a symlink is itself ("link"), not what it points to. */
static int
sys_stat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if ((lua_toboolean(L, 2) ? lstat(path, &st) : stat(path, &st)) != 0)
        return push_errno(L, path);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, S_ISREG(st.st_mode)   ? "file"
                      : S_ISDIR(st.st_mode) ? "directory"
                      : S_ISLNK(st.st_mode) ? "link"
                                            : "other");
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)st.st_mtime);
    lua_setfield(L, -2, "mtime");
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
    lua_setfield(L, -2, "mode");
    return 1;
}

/* sys.mkdir(path, mode=0755) -> true; creates missing parents, like mkdir -p */
static int
sys_mkdir(lua_State *L)
{
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    mode_t mode = (mode_t)luaL_optinteger(L, 2, 0755);
    /* Usually the directory or its parent is there already (the state store
     * asks before every write): one call then, not one per component. */
    if (mkdir(path, mode) == 0 || errno == EEXIST) {
        lua_pushboolean(L, 1);
        return 1;
    }
    luaL_Buffer b;
    char *copy = luaL_buffinitsize(L, &b, len + 1);
    memcpy(copy, path, len + 1);
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, mode) != 0 && errno != EEXIST)
            return push_errno(L, copy);
        *p = '/';
    }
    if (mkdir(copy, mode) != 0 && errno != EEXIST)
        return push_errno(L, copy);
    lua_pushboolean(L, 1);
    return 1;
}

/* sys.write_atomic(path, data, mode=0600, durable=true) -> true, or fail, message.
 * Write, fsync, rename: a crash leaves the old file or the new, never half.
 * durable=false skips the fsync, for state nobody needs after a power cut
 * (mock-world journals), where it would dominate the run time. */
static int
sys_write_atomic(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    mode_t mode = (mode_t)luaL_optinteger(L, 3, 0600);
    int durable = lua_isnoneornil(L, 4) || lua_toboolean(L, 4);
    /* Only a regular file is replaced: rename would turn a symlink, a FIFO
     * or a device (/dev/full, as root) into a regular file. */
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: exists and is not a regular file", path);
        lua_pushinteger(L, EEXIST);
        return 3;
    }
    const char *tmp = lua_pushfstring(L, "%s.tmp.%d", path, (int)getpid());
    unlink(tmp); /* a leftover of a killed run with our pid; O_EXCL refuses anything else */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return push_errno(L, tmp);
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int saved = errno;
            close(fd);
            unlink(tmp);
            errno = saved;
            return push_errno(L, tmp);
        }
        done += (size_t)n;
    }
    if ((durable && fsync(fd) != 0) || close(fd) != 0) {
        int saved = errno;
        unlink(tmp);
        errno = saved;
        return push_errno(L, tmp);
    }
    if (rename(tmp, path) != 0) {
        int saved = errno;
        unlink(tmp);
        errno = saved;
        return push_errno(L, path);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* sys.realpath(path) -> absolute path, or fail */
static int
sys_realpath(lua_State *L)
{
    char *resolved = realpath(luaL_checkstring(L, 1), NULL);
    if (resolved == NULL)
        return push_errno(L, lua_tostring(L, 1));
    lua_pushstring(L, resolved);
    free(resolved);
    return 1;
}

/* sys.peak_rss() -> peak resident set size of this process, in KiB */
static int
sys_peak_rss(lua_State *L)
{
    FILE *f = fopen("/proc/self/status", "r");
    long kib = -1;
    if (f != NULL) {
        char line[256];
        while (fgets(line, sizeof line, f) != NULL)
            if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
                break;
        fclose(f);
    }
    lua_pushinteger(L, kib);
    return 1;
}

static const luaL_Reg sys_functions[] = {
    {"monotime", sys_monotime},
    {"time", sys_time},
    {"sleep", sys_sleep},
    {"interrupted", sys_interrupted},
    {"suspend_interrupt", sys_suspend_interrupt},
    {"isatty", sys_isatty},
    {"term_width", sys_term_width},
    {"getpid", sys_getpid},
    {"hostname", sys_hostname},
    {"setenv", sys_setenv},
    {"spawn", sys_spawn},
    {"kill", sys_kill},
    {"wait", sys_wait},
    {"free_port", sys_free_port},
    {"port_open", sys_port_open},
    {"lock", sys_lock},
    {"readdir", sys_readdir},
    {"stat", sys_stat},
    {"mkdir", sys_mkdir},
    {"write_atomic", sys_write_atomic},
    {"realpath", sys_realpath},
    {"peak_rss", sys_peak_rss},
    {NULL, NULL},
};

static const luaL_Reg lock_methods[] = {
    {"release", lock_release},
    {"close", lock_release},
    {"__gc", lock_release},
    {"__close", lock_release},
    {NULL, NULL},
};

int
luaopen_atlas_sys(lua_State *L)
{
    if (luaL_newmetatable(L, LOCK_MT)) {
        luaL_setfuncs(L, lock_methods, 0);
        lua_pushvalue(L, -1);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    luaL_newlib(L, sys_functions);
    lua_pushstring(L, ATLAS_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
