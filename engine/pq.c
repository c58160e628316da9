/*
 * atlas.pq: PostgreSQL connections on libpq, the native half of atlas.sql.
 *
 * Everything that waits on the server (connecting, running a statement)
 * goes through libpq's asynchronous API and poll(), so a Ctrl-C or a
 * per-call timeout can cancel the statement on the server with PQcancel
 * instead of leaving the process stuck in a blocking read.
 *
 * Lua's convention: misuse (a closed connection, a parameter with no SQL
 * text form) raises; a failure of the server or the network returns
 * nil, message, code, fields. code is the server's SQLSTATE when it sent
 * one, else one of "connect", "timeout", "interrupted", "lost", "copy",
 * "conninfo". fields holds what the server said besides the message
 * (severity, detail, hint, position, where), and connection_lost = true when
 * the connection can carry nothing more. atlas.sql makes the error object.
 *
 * Cells become integers, floats and booleans here; every other type stays
 * the server's text. atlas.sql converts json and timestamp columns, by the
 * type OIDs that info.types lists.
 */
#include "atlas.h"

#include <libpq-fe.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CONN_MT "atlas.pq.conn"
#define RESULT_MT "atlas.pq.result"

/* Type OIDs, stable since PostgreSQL 7 (catalog/pg_type_d.h is a server
 * header that libpq-dev does not ship). */
enum {
    OID_BOOL = 16,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
};

/* How long to wait for the server to acknowledge a cancel before the
 * connection is given up as lost. */
#define CANCEL_GRACE_SECONDS 5.0
/* Longest single poll(): the interval at which Ctrl-C is noticed even when
 * the signal did not interrupt poll() itself. */
#define POLL_SLICE_SECONDS 0.1
/* A chatty server function must not grow memory without bound. */
#define MAX_NOTICE_BYTES 65536

typedef struct {
    PGconn *conn;  /* NULL once closed */
    char *notices; /* "SEVERITY: message" strings, each ended by '\0' */
    size_t notices_len;
    int notices_dropped;
} Conn;

enum stop_reason { STOP_NONE, STOP_TIMEOUT, STOP_INTERRUPT };

struct wait_state {
    atlas_wait wait;
    double deadline;  /* 0: none */
    double cancel_at; /* when the cancel was sent, 0: not sent */
    enum stop_reason why;
    int copy_refused; /* a COPY stream was ended unread */
};

static double
monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits for the socket; a signal or an elapsed slice both return so the
 * caller can look at the interrupt flag and the deadline. */
static void
wait_socket(int sock, int for_write, double seconds)
{
    struct pollfd pfd = {.fd = sock, .events = for_write ? POLLOUT : POLLIN};
    if (seconds > POLL_SLICE_SECONDS)
        seconds = POLL_SLICE_SECONDS;
    if (seconds < 0)
        seconds = 0;
    (void)poll(&pfd, 1, (int)(seconds * 1000.0) + 1);
}

/* libpq calls this from inside PQgetResult/PQconsumeInput, where raising a
 * Lua error would longjmp through libpq: so only queue the text in C, and
 * conn:notices() hands it to Lua later. */
static void
notice_receiver(void *arg, const PGresult *res)
{
    Conn *c = arg;
    const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (severity == NULL)
        severity = "NOTICE";
    if (message == NULL)
        message = PQresultErrorMessage(res);
    size_t size = strlen(severity) + strlen(message) + 3;
    char *grown = c->notices_len + size <= MAX_NOTICE_BYTES
                      ? realloc(c->notices, c->notices_len + size)
                      : NULL;
    if (grown == NULL) {
        c->notices_dropped++;
        return;
    }
    c->notices = grown;
    snprintf(grown + c->notices_len, size, "%s: %s", severity, message);
    c->notices_len += size;
}

static void
free_notices(Conn *c)
{
    free(c->notices);
    c->notices = NULL;
    c->notices_len = 0;
    c->notices_dropped = 0;
}

/* A new connection userdata, marked closed: whatever fails after this,
 * its __gc has nothing or exactly one PGconn to free. */
static Conn *
push_conn(lua_State *L)
{
    Conn *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, CONN_MT);
    return c;
}

/* conn:close(), and __gc and __close: closes the connection once; safe to
 * call again. */
static int
conn_gc(lua_State *L)
{
    Conn *c = luaL_checkudata(L, 1, CONN_MT);
    if (c->conn != NULL) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
    free_notices(c);
    return 0;
}

static Conn *
check_open(lua_State *L)
{
    Conn *c = luaL_checkudata(L, 1, CONN_MT);
    if (c->conn == NULL)
        luaL_error(L, "attempt to use a closed connection");
    return c;
}

/* A userdata that owns a PGresult, so a Lua error while the rows are being
 * converted (out of memory) cannot leak it. */
static PGresult **
push_result_box(lua_State *L)
{
    PGresult **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, RESULT_MT);
    return box;
}

/* __gc of a result box: frees whatever result it still holds. */
static int
result_box_gc(lua_State *L)
{
    PGresult **box = luaL_checkudata(L, 1, RESULT_MT);
    PQclear(*box);
    *box = NULL;
    return 0;
}

static void
set_string_field(lua_State *L, const char *name, const char *value)
{
    if (value != NULL && *value != '\0') {
        lua_pushstring(L, value);
        lua_setfield(L, -2, name);
    }
}

/* Pushes nil, message, code, fields (see the top of this file). The
 * server's fields come from res when there is one; message loses the
 * newline libpq ends its own messages with. */
static int
push_failure(lua_State *L, const char *message, const char *code, const PGresult *res, int lost)
{
    size_t len = strlen(message);
    while (len > 0 && (message[len - 1] == '\n' || message[len - 1] == ' '))
        len--;
    lua_pushnil(L);
    lua_pushlstring(L, message, len);
    lua_pushstring(L, code);
    lua_createtable(L, 0, 6);
    if (res != NULL) {
        set_string_field(L, "severity", PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED));
        set_string_field(L, "detail", PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL));
        set_string_field(L, "hint", PQresultErrorField(res, PG_DIAG_MESSAGE_HINT));
        set_string_field(L, "position", PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION));
        set_string_field(L, "where", PQresultErrorField(res, PG_DIAG_CONTEXT));
    }
    if (lost) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "connection_lost");
    }
    return 4;
}

static void
send_cancel(PGconn *conn)
{
    PGcancel *cancel = PQgetCancel(conn);
    if (cancel == NULL)
        return;
    char errbuf[256];
    (void)PQcancel(cancel, errbuf, sizeof errbuf);
    PQfreeCancel(cancel);
}

/* Waits one slice for input from the server and reads it. Cancels the
 * statement on Ctrl-C or at the deadline; returns 0 when the connection is
 * lost, or the server leaves the cancel unanswered. */
static int
wait_for_server(PGconn *conn, struct wait_state *ws)
{
    double now = monotonic_seconds();
    double slice = POLL_SLICE_SECONDS;
    if (ws->cancel_at == 0) {
        if (atlas_wait_interrupted(&ws->wait))
            ws->why = STOP_INTERRUPT;
        else if (ws->deadline > 0 && now >= ws->deadline)
            ws->why = STOP_TIMEOUT;
        if (ws->why != STOP_NONE) {
            send_cancel(conn);
            ws->cancel_at = now;
        } else if (ws->deadline > 0) {
            slice = ws->deadline - now;
        }
    } else if (now - ws->cancel_at > CANCEL_GRACE_SECONDS) {
        return 0;
    }
    wait_socket(PQsocket(conn), 0, slice);
    return PQconsumeInput(conn);
}

static int
succeeded(const PGresult *res)
{
    ExecStatusType status = PQresultStatus(res);
    return status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK || status == PGRES_EMPTY_QUERY;
}

/* A COPY ... FROM STDIN / TO STDOUT is a data stream, not a result: end it
 * so the connection is idle again (an incoming COPY is aborted, an outgoing
 * one read to its end and dropped). Returns 0 when the connection was lost. */
static int
leave_copy(PGconn *conn, ExecStatusType status, struct wait_state *ws)
{
    if (status != PGRES_COPY_OUT)
        return PQputCopyEnd(conn, "atlas.sql does not stream COPY data") >= 0;
    for (;;) {
        char *data = NULL;
        int n = PQgetCopyData(conn, &data, 1);
        PQfreemem(data);
        if (n == -1)
            return 1;
        if (n == -2 || (n == 0 && !wait_for_server(conn, ws)))
            return 0;
    }
}

/* Collects every result of the statement(s) just sent, keeping the first
 * error or else the last result in the box. Returns 0 when the connection
 * was lost on the way. */
static int
collect_results(PGconn *conn, PGresult **box, struct wait_state *ws)
{
    for (;;) {
        while (PQisBusy(conn))
            if (!wait_for_server(conn, ws))
                return 0;
        PGresult *res = PQgetResult(conn);
        if (res == NULL)
            return 1;
        ExecStatusType status = PQresultStatus(res);
        if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) {
            PQclear(res);
            ws->copy_refused = 1;
            if (!leave_copy(conn, status, ws))
                return 0;
        } else if (*box == NULL || succeeded(*box)) {
            PQclear(*box);
            *box = res;
        } else {
            PQclear(res);
        }
    }
}

/* Pushes one cell: atlas.null, or the text converted by the column's type. */
static void
push_cell(lua_State *L, const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col)) {
        atlas_pushnull(L);
        return;
    }
    const char *text = PQgetvalue(res, row, col);
    switch (PQftype(res, col)) {
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
        lua_pushinteger(L, (lua_Integer)strtoll(text, NULL, 10));
        break;
    case OID_FLOAT4:
    case OID_FLOAT8:
        lua_pushnumber(L, (lua_Number)strtod(text, NULL));
        break;
    case OID_BOOL:
        lua_pushboolean(L, text[0] == 't');
        break;
    default: /* numeric included: text keeps every digit */
        lua_pushlstring(L, text, (size_t)PQgetlength(res, row, col));
        break;
    }
}

/* Pushes rows, info for a successful result: the rows as tables keyed by
 * column name, and {command=, rows_affected=, columns={...}, types={oid...}}. */
static void
push_rows(lua_State *L, const PGresult *res)
{
    int nrows = PQntuples(res);
    int ncols = PQnfields(res);
    lua_createtable(L, ncols, 0);
    int columns = lua_gettop(L);
    lua_createtable(L, ncols, 0);
    for (int col = 0; col < ncols; col++) {
        lua_pushstring(L, PQfname(res, col));
        lua_rawseti(L, columns, col + 1);
        lua_pushinteger(L, (lua_Integer)PQftype(res, col));
        lua_rawseti(L, -2, col + 1);
    }
    lua_createtable(L, nrows, 0);
    for (int row = 0; row < nrows; row++) {
        lua_createtable(L, 0, ncols);
        for (int col = 0; col < ncols; col++) {
            lua_rawgeti(L, columns, col + 1);
            push_cell(L, res, row, col);
            lua_rawset(L, -3);
        }
        lua_rawseti(L, -2, row + 1);
    }
    lua_createtable(L, 0, 4);
    set_string_field(L, "command", PQcmdStatus((PGresult *)res));
    const char *affected = PQcmdTuples((PGresult *)res);
    if (*affected != '\0') {
        lua_pushinteger(L, (lua_Integer)strtoll(affected, NULL, 10));
        lua_setfield(L, -2, "rows_affected");
    }
    lua_pushvalue(L, columns);
    lua_setfield(L, -2, "columns");
    lua_rotate(L, columns + 1, -1); /* the types table goes on top */
    lua_setfield(L, -2, "types");
}

/* Pushes a statement's failure: the reason it was cut short when it was,
 * else what the server or libpq said. */
static int
push_statement_failure(lua_State *L, const struct wait_state *ws, double timeout,
                       const char *message, const char *code, const PGresult *res, int lost)
{
    char stopped[80];
    if (ws->why == STOP_TIMEOUT) {
        snprintf(stopped, sizeof stopped, "statement cancelled after the %g s timeout", timeout);
        message = stopped;
        code = "timeout";
    } else if (ws->why == STOP_INTERRUPT) {
        message = "statement cancelled by Ctrl-C";
        code = "interrupted";
    }
    return push_failure(L, message, code, res, lost);
}

/* Finishes a query or exec: rows, info, or nil, message, code, fields. */
static int
finish_statement(lua_State *L, Conn *c, double timeout)
{
    struct wait_state ws = {.wait = atlas_wait_start(),
                            .deadline = timeout > 0 ? monotonic_seconds() + timeout : 0};
    PGresult **box = push_result_box(L);
    if (!collect_results(c->conn, box, &ws)) {
        /* The server did not answer: the connection can carry nothing
         * more, so it is closed now rather than reused half-way. */
        const char *said = PQerrorMessage(c->conn);
        push_statement_failure(L, &ws, timeout, *said ? said : "connection lost", "lost", NULL, 1);
        PQfinish(c->conn);
        c->conn = NULL;
        return 4;
    }
    if (ws.copy_refused)
        return push_failure(L,
                            "COPY FROM STDIN / TO STDOUT is not supported (COPY to or from a "
                            "server file, or SELECT, instead)",
                            "copy", NULL, 0);
    int lost = PQstatus(c->conn) == CONNECTION_BAD;
    if (*box == NULL)
        return push_failure(L, "no result from server", "lost", NULL, lost);
    if (!succeeded(*box)) {
        const char *sqlstate = PQresultErrorField(*box, PG_DIAG_SQLSTATE);
        const char *primary = PQresultErrorField(*box, PG_DIAG_MESSAGE_PRIMARY);
        /* An error libpq made itself (a lost connection) has no SQLSTATE. */
        return push_statement_failure(L, &ws, timeout,
                                      primary != NULL ? primary : PQresultErrorMessage(*box),
                                      sqlstate != NULL ? sqlstate : "lost", *box, lost);
    }
    push_rows(L, *box);
    return 2;
}

/* Text form of parameter $n at idx (left on the stack, so it stays alive);
 * NULL for SQL NULL. Floats keep every digit. */
static const char *
param_text(lua_State *L, int idx, int n)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return NULL;
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? "true" : "false";
    case LUA_TSTRING:
        return lua_tostring(L, idx);
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, idx));
        char buf[64];
        snprintf(buf, sizeof buf, "%.17g", (double)lua_tonumber(L, idx));
        return lua_pushstring(L, buf);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) /* atlas.null */
            return NULL;
        break;
    default:
        break;
    }
    luaL_error(L, "query parameter $%d: a %s has no SQL text form", n, luaL_typename(L, idx));
    return NULL;
}

/* conn:query(sql, params, nparams, timeout) -> rows, info | nil, message, code, fields
 * params[1..nparams] are sent apart from the SQL text ($1..$n). */
static int
conn_query(lua_State *L)
{
    Conn *c = check_open(L);
    const char *sql = luaL_checkstring(L, 2);
    int nparams = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        nparams = (int)luaL_optinteger(L, 4, (lua_Integer)lua_rawlen(L, 3));
    }
    luaL_argcheck(L, nparams >= 0 && nparams <= 65535, 4, "between 0 and 65535 parameters");
    double timeout = luaL_optnumber(L, 5, 0);
    lua_settop(L, 5);
    luaL_checkstack(L, nparams + 8, "too many parameters");
    const char **values = lua_newuserdatauv(L, sizeof(char *) * (size_t)nparams, 0);
    for (int i = 0; i < nparams; i++) {
        lua_rawgeti(L, 3, i + 1);
        values[i] = param_text(L, lua_gettop(L), i + 1);
    }
    if (!PQsendQueryParams(c->conn, sql, nparams, NULL, values, NULL, NULL, 0))
        return push_failure(L, PQerrorMessage(c->conn), "lost", NULL,
                            PQstatus(c->conn) == CONNECTION_BAD);
    return finish_statement(L, c, timeout);
}

/* conn:exec(sql, timeout) -> rows, info | nil, message, code, fields
 * Several statements in one string; rows and info are the last statement's. */
static int
conn_exec(lua_State *L)
{
    Conn *c = check_open(L);
    const char *sql = luaL_checkstring(L, 2);
    double timeout = luaL_optnumber(L, 3, 0);
    if (!PQsendQuery(c->conn, sql))
        return push_failure(L, PQerrorMessage(c->conn), "lost", NULL,
                            PQstatus(c->conn) == CONNECTION_BAD);
    return finish_statement(L, c, timeout);
}

/* conn:notices() -> list of "SEVERITY: message" since the last call, or nil */
static int
conn_notices(lua_State *L)
{
    Conn *c = luaL_checkudata(L, 1, CONN_MT);
    if (c->notices_len == 0 && c->notices_dropped == 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_newtable(L);
    int i = 0;
    for (size_t at = 0; at < c->notices_len; at += strlen(c->notices + at) + 1) {
        lua_pushstring(L, c->notices + at);
        lua_rawseti(L, -2, ++i);
    }
    if (c->notices_dropped > 0) {
        lua_pushfstring(L, "WARNING: %d more notices were dropped", c->notices_dropped);
        lua_rawseti(L, -2, ++i);
    }
    free_notices(c);
    return 1;
}

/* conn:info() -> {host, port, dbname, user, server_version, backend_pid, ssl, ok} */
static int
conn_info(lua_State *L)
{
    Conn *c = check_open(L);
    lua_createtable(L, 0, 8);
    set_string_field(L, "host", PQhost(c->conn));
    set_string_field(L, "port", PQport(c->conn));
    set_string_field(L, "dbname", PQdb(c->conn));
    set_string_field(L, "user", PQuser(c->conn));
    lua_pushinteger(L, PQserverVersion(c->conn));
    lua_setfield(L, -2, "server_version");
    lua_pushinteger(L, PQbackendPID(c->conn));
    lua_setfield(L, -2, "backend_pid");
    lua_pushboolean(L, PQsslInUse(c->conn));
    lua_setfield(L, -2, "ssl");
    lua_pushboolean(L, PQstatus(c->conn) == CONNECTION_OK);
    lua_setfield(L, -2, "ok");
    return 1;
}

/* Pushes argument arg quoted as an identifier or a literal, for conn's
 * encoding. */
static int
push_quoted(lua_State *L, PGconn *conn, int arg, int literal)
{
    size_t len;
    const char *s = luaL_checklstring(L, arg, &len);
    char *quoted = literal ? PQescapeLiteral(conn, s, len) : PQescapeIdentifier(conn, s, len);
    if (quoted == NULL)
        return luaL_error(L, "cannot quote: %s", PQerrorMessage(conn));
    lua_pushstring(L, quoted);
    PQfreemem(quoted);
    return 1;
}

/* conn:quote_ident(s) -> "s", escaped for this connection's encoding */
static int
conn_quote_ident(lua_State *L)
{
    return push_quoted(L, check_open(L)->conn, 2, 0);
}

/* conn:quote_literal(s) -> 's', escaped for this connection's encoding */
static int
conn_quote_literal(lua_State *L)
{
    return push_quoted(L, check_open(L)->conn, 2, 1);
}

/* Waits for PQconnectPoll to finish: NULL once connected, else the code of
 * the failure. Ctrl-C and the timeout abandon it. */
static const char *
await_connection(PGconn *conn, double timeout)
{
    double deadline = monotonic_seconds() + timeout;
    atlas_wait wait = atlas_wait_start();
    PostgresPollingStatusType state = PGRES_POLLING_WRITING;
    for (;;) {
        if (state == PGRES_POLLING_OK)
            return NULL;
        if (state == PGRES_POLLING_FAILED)
            return "connect";
        if (atlas_wait_interrupted(&wait))
            return "interrupted";
        double left = timeout > 0 ? deadline - monotonic_seconds() : POLL_SLICE_SECONDS;
        if (left <= 0)
            return "timeout";
        wait_socket(PQsocket(conn), state == PGRES_POLLING_WRITING, left);
        state = PQconnectPoll(conn);
    }
}

/* pq.connect({keyword = value, ...}, timeout) -> conn | nil, message, code, fields
 * The keywords are libpq's; no conninfo string is ever built, so nothing
 * needs quoting and no text holding a password is made. */
static int
pq_connect(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    double timeout = luaL_optnumber(L, 2, 0);
    lua_settop(L, 2);
    int count = 0;
    for (lua_pushnil(L); lua_next(L, 1); lua_pop(L, 1)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "connection parameters must be strings (got %s = %s)",
                              luaL_typename(L, -2), luaL_typename(L, -1));
        count++;
    }
    /* keywords[0..count] then values[0..count], each list NULL-ended. The
     * strings stay alive: they are keys and values of the table at 1. */
    const char **keywords = lua_newuserdatauv(L, sizeof(char *) * 2 * (size_t)(count + 1), 0);
    const char **values = keywords + count + 1;
    int i = 0;
    for (lua_pushnil(L); lua_next(L, 1); lua_pop(L, 1)) {
        keywords[i] = lua_tostring(L, -2);
        values[i++] = lua_tostring(L, -1);
    }
    keywords[i] = values[i] = NULL;

    Conn *c = push_conn(L);
    c->conn = PQconnectStartParams(keywords, values, 0);
    if (c->conn == NULL)
        return luaL_error(L, "out of memory");
    const char *code =
        PQstatus(c->conn) == CONNECTION_BAD ? "connect" : await_connection(c->conn, timeout);
    if (code == NULL) {
        PQsetNoticeReceiver(c->conn, notice_receiver, c);
        return 1;
    }
    char text[80];
    const char *message = PQerrorMessage(c->conn);
    if (strcmp(code, "timeout") == 0) {
        snprintf(text, sizeof text, "could not connect within the %g s connect_timeout", timeout);
        message = text;
    } else if (strcmp(code, "interrupted") == 0) {
        message = "connecting cancelled by Ctrl-C";
    } else if (*message == '\0') {
        message = "connection failed";
    }
    push_failure(L, message, code, NULL, 0);
    /* Free the socket now rather than at the next garbage collection. */
    PQfinish(c->conn);
    c->conn = NULL;
    return 4;
}

/* pq.conninfo_parse(s) -> {keyword = value} of the options s sets
 *                        | nil, message, "conninfo", {} */
static int
pq_conninfo_parse(lua_State *L)
{
    const char *conninfo = luaL_checkstring(L, 1);
    char *errmsg = NULL;
    PQconninfoOption *options = PQconninfoParse(conninfo, &errmsg);
    if (options == NULL) {
        if (errmsg == NULL)
            return luaL_error(L, "out of memory");
        push_failure(L, errmsg, "conninfo", NULL, 0);
        PQfreemem(errmsg);
        return 4;
    }
    /* Collect the values into a plain table, then free: nothing that could
     * raise runs while libpq's options are held, but for out of memory. */
    lua_createtable(L, 0, 8);
    for (PQconninfoOption *o = options; o->keyword != NULL; o++) {
        if (o->val == NULL)
            continue;
        lua_pushstring(L, o->val);
        lua_setfield(L, -2, o->keyword);
    }
    PQconninfoFree(options);
    return 1;
}

/* Offline escaping needs a PGconn for its encoding, but no server: a
 * connection that failed to parse its options is exactly that. It is made
 * once and lives in the registry, freed by its __gc. */
static PGconn *
offline_conn(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, "atlas.pq.offline") == LUA_TUSERDATA) {
        PGconn *conn = ((Conn *)lua_touserdata(L, -1))->conn;
        lua_pop(L, 1);
        return conn;
    }
    lua_pop(L, 1);
    Conn *c = push_conn(L);
    c->conn = PQconnectStart("atlas_offline_escaping=1");
    if (c->conn == NULL)
        luaL_error(L, "out of memory");
    lua_setfield(L, LUA_REGISTRYINDEX, "atlas.pq.offline");
    return c->conn;
}

/* pq.quote_ident(s) -> "s" (PQescapeIdentifier, no connection needed) */
static int
pq_quote_ident(lua_State *L)
{
    return push_quoted(L, offline_conn(L), 1, 0);
}

/* pq.quote_literal(s) -> 's' or E'...' (PQescapeLiteral, no connection needed) */
static int
pq_quote_literal(lua_State *L)
{
    return push_quoted(L, offline_conn(L), 1, 1);
}

static const luaL_Reg conn_methods[] = {
    {"query", conn_query},
    {"exec", conn_exec},
    {"notices", conn_notices},
    {"info", conn_info},
    {"quote_ident", conn_quote_ident},
    {"quote_literal", conn_quote_literal},
    {"close", conn_gc},
    {NULL, NULL},
};

static const luaL_Reg pq_functions[] = {
    {"connect", pq_connect},
    {"conninfo_parse", pq_conninfo_parse},
    {"quote_ident", pq_quote_ident},
    {"quote_literal", pq_quote_literal},
    {NULL, NULL},
};

int
luaopen_atlas_pq(lua_State *L)
{
    luaL_newmetatable(L, RESULT_MT);
    lua_pushcfunction(L, result_box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    luaL_newmetatable(L, CONN_MT);
    luaL_newlib(L, conn_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, conn_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, conn_gc);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);

    luaL_newlib(L, pq_functions);
    return 1;
}
