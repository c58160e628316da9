/*
 * atlas.pq: PostgreSQL connections on libpq, the native half of atlas.sql.
 *
 * Everything that waits on the server (connecting, running a statement)
 * goes through libpq's asynchronous API and poll(), so a Ctrl-C or a
 * per-call timeout can cancel the statement on the server with PQcancel
 * instead of leaving the process stuck in a blocking read.
 *
 * Failures of the server or the network are returned as `nil, errtable`
 * (sqlstate, message, detail, hint, host, port, dbname); atlas.sql turns
 * them into atlas.error objects. Misuse (a closed connection, a parameter
 * of a type that has no SQL text form) raises.
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
#define MAX_NOTICES 1000

struct notice {
    struct notice *next;
    char text[];
};

typedef struct {
    PGconn *conn; /* NULL once closed */
    struct notice *notices;
    struct notice **notices_tail;
    int notice_count;
    int notices_dropped;
} Conn;

typedef struct {
    PGresult *res;
} ResultBox;

enum stop_reason { STOP_NONE, STOP_TIMEOUT, STOP_INTERRUPT, STOP_LOST };

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

static void
free_notices(Conn *c)
{
    struct notice *n = c->notices;
    while (n != NULL) {
        struct notice *next = n->next;
        free(n);
        n = next;
    }
    c->notices = NULL;
    c->notices_tail = &c->notices;
    c->notice_count = 0;
    c->notices_dropped = 0;
}

/* libpq calls this from inside PQgetResult/PQconsumeInput, where raising a
 * Lua error would longjmp through libpq: so only queue the text in C, and
 * conn:notices() hands it to Lua later. */
static void
notice_receiver(void *arg, const PGresult *res)
{
    Conn *c = arg;
    if (c->notice_count >= MAX_NOTICES) {
        c->notices_dropped++;
        return;
    }
    const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (message == NULL)
        message = PQresultErrorMessage(res);
    if (severity == NULL)
        severity = "NOTICE";
    size_t size = strlen(severity) + strlen(message) + 3;
    struct notice *n = malloc(sizeof *n + size);
    if (n == NULL)
        return;
    snprintf(n->text, size, "%s: %s", severity, message);
    n->next = NULL;
    *c->notices_tail = n;
    c->notices_tail = &n->next;
    c->notice_count++;
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
static ResultBox *
push_result_box(lua_State *L)
{
    ResultBox *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->res = NULL;
    luaL_setmetatable(L, RESULT_MT);
    return box;
}

static void
result_box_set(ResultBox *box, PGresult *res)
{
    if (box->res != NULL)
        PQclear(box->res);
    box->res = res;
}

/* __gc of a result box: frees whatever result it still holds. */
static int
result_box_gc(lua_State *L)
{
    ResultBox *box = luaL_checkudata(L, 1, RESULT_MT);
    result_box_set(box, NULL);
    return 0;
}

/* Scratch memory owned by the Lua GC (arrays of char pointers). */
static void *
push_scratch(lua_State *L, size_t size)
{
    return lua_newuserdatauv(L, size > 0 ? size : 1, 0);
}

static void
set_string_field(lua_State *L, const char *name, const char *value)
{
    if (value != NULL && *value != '\0') {
        lua_pushstring(L, value);
        lua_setfield(L, -2, name);
    }
}

/* Pushes libpq's message without the trailing newline libpq appends. */
static void
push_trimmed(lua_State *L, const char *message)
{
    size_t len = strlen(message);
    while (len > 0 && (message[len - 1] == '\n' || message[len - 1] == ' '))
        len--;
    lua_pushlstring(L, message, len);
}

/* The fields every error names; never the password or the conninfo. */
static void
set_connection_fields(lua_State *L, PGconn *conn)
{
    if (conn == NULL)
        return;
    set_string_field(L, "host", PQhost(conn));
    set_string_field(L, "port", PQport(conn));
    set_string_field(L, "dbname", PQdb(conn));
    set_string_field(L, "user", PQuser(conn));
}

/* Pushes nil and an error table built from the connection's last message. */
static int
push_connection_error(lua_State *L, PGconn *conn, const char *sqlstate, const char *fallback)
{
    lua_pushnil(L);
    lua_createtable(L, 0, 8);
    const char *message = conn != NULL ? PQerrorMessage(conn) : NULL;
    if (message == NULL || *message == '\0')
        message = fallback;
    push_trimmed(L, message);
    lua_setfield(L, -2, "message");
    set_string_field(L, "sqlstate", sqlstate);
    set_connection_fields(L, conn);
    return 2;
}

static int
push_result_error(lua_State *L, PGconn *conn, const PGresult *res)
{
    lua_pushnil(L);
    lua_createtable(L, 0, 10);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (primary != NULL)
        lua_pushstring(L, primary);
    else
        push_trimmed(L, PQresultErrorMessage(res));
    lua_setfield(L, -2, "message");
    const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    /* An error libpq made itself (lost connection) carries no SQLSTATE. */
    set_string_field(L, "sqlstate", sqlstate != NULL ? sqlstate : "08006");
    set_string_field(L, "severity", PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED));
    set_string_field(L, "detail", PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL));
    set_string_field(L, "hint", PQresultErrorField(res, PG_DIAG_MESSAGE_HINT));
    set_string_field(L, "position", PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION));
    set_string_field(L, "where", PQresultErrorField(res, PG_DIAG_CONTEXT));
    set_connection_fields(L, conn);
    return 2;
}

/* Adds why the statement stopped to the error table on top of the stack. */
static void
mark_stop_reason(lua_State *L, const struct wait_state *ws, double timeout)
{
    if (ws->why == STOP_TIMEOUT) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "timeout");
        lua_pushfstring(L, "statement cancelled after the %f s timeout", timeout);
        lua_setfield(L, -2, "message");
        lua_pushliteral(L, "57014");
        lua_setfield(L, -2, "sqlstate");
    } else if (ws->why == STOP_INTERRUPT) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "interrupted");
        lua_pushliteral(L, "statement cancelled by Ctrl-C");
        lua_setfield(L, -2, "message");
        lua_pushliteral(L, "57014");
        lua_setfield(L, -2, "sqlstate");
    }
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

/* Reads from the server until a result can be taken without blocking.
 * Cancels the statement on Ctrl-C or at the deadline, and gives up on a
 * server that does not answer the cancel either. */
static enum stop_reason
await_result(PGconn *conn, struct wait_state *ws)
{
    while (PQisBusy(conn)) {
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
            return STOP_LOST;
        }
        wait_socket(PQsocket(conn), 0, slice);
        if (!PQconsumeInput(conn))
            return STOP_LOST;
    }
    return STOP_NONE;
}

static int
is_error_status(ExecStatusType status)
{
    return status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE ||
           status == PGRES_NONFATAL_ERROR;
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
        if (data != NULL)
            PQfreemem(data);
        if (n == -1)
            return 1;
        if (n == -2)
            return 0;
        if (n == 0) {
            if (ws->cancel_at == 0 && atlas_wait_interrupted(&ws->wait)) {
                ws->why = STOP_INTERRUPT;
                ws->cancel_at = monotonic_seconds();
                send_cancel(conn);
            }
            wait_socket(PQsocket(conn), 0, POLL_SLICE_SECONDS);
            if (!PQconsumeInput(conn))
                return 0;
        }
    }
}

/* Collects every result of the statement(s) just sent, keeping the first
 * error or else the last result in the box. Returns 0 when the connection
 * was lost on the way. */
static int
collect_results(PGconn *conn, ResultBox *box, struct wait_state *ws)
{
    int have_error = 0;
    for (;;) {
        if (await_result(conn, ws) == STOP_LOST)
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
            continue;
        }
        if (have_error) {
            PQclear(res);
        } else {
            result_box_set(box, res);
            have_error = is_error_status(status);
        }
    }
}

/* Pushes one non-NULL cell, converted by its column's type. */
static void
push_value(lua_State *L, Oid type, const char *text, size_t len)
{
    switch (type) {
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
        lua_pushlstring(L, text, len);
        break;
    }
}

/* Pushes one row as a table keyed by column name; the names are on the
 * stack from index names, the column types in types. */
static void
push_row(lua_State *L, const PGresult *res, int row, int names, const Oid *types)
{
    int ncols = PQnfields(res);
    lua_createtable(L, 0, ncols);
    for (int col = 0; col < ncols; col++) {
        lua_pushvalue(L, names + col);
        size_t len = (size_t)PQgetlength(res, row, col);
        /* Only an empty value can be NULL: skip the call otherwise. */
        if (len == 0 && PQgetisnull(res, row, col))
            atlas_pushnull(L);
        else
            push_value(L, types[col], PQgetvalue(res, row, col), len);
        lua_rawset(L, -3);
    }
}

/* Pushes the rows: an array of tables keyed by column name. */
static void
push_rows(lua_State *L, const PGresult *res)
{
    int nrows = PQntuples(res);
    int ncols = PQnfields(res);
    luaL_checkstack(L, ncols + 4, "too many columns");
    /* Column types looked up once, not once per cell. */
    Oid *types = push_scratch(L, sizeof(Oid) * (size_t)ncols);
    int names = lua_gettop(L) + 1;
    for (int col = 0; col < ncols; col++) {
        lua_pushstring(L, PQfname(res, col));
        types[col] = PQftype(res, col);
    }
    lua_createtable(L, nrows, 0);
    for (int row = 0; row < nrows; row++) {
        push_row(L, res, row, names, types);
        lua_rawseti(L, -2, row + 1);
    }
    /* Drop the types and names, keeping the rows. */
    lua_copy(L, -1, names - 1);
    lua_settop(L, names - 1);
}

/* Pushes {command=, rows_affected=, columns={...}, types={oid...}} for a successful result. */
static void
push_result_info(lua_State *L, const PGresult *res)
{
    lua_createtable(L, 0, 3);
    set_string_field(L, "command", PQcmdStatus((PGresult *)res));
    const char *affected = PQcmdTuples((PGresult *)res);
    if (affected != NULL && *affected != '\0') {
        lua_pushinteger(L, (lua_Integer)strtoll(affected, NULL, 10));
        lua_setfield(L, -2, "rows_affected");
    }
    int ncols = PQnfields(res);
    lua_createtable(L, ncols, 0);
    for (int col = 0; col < ncols; col++) {
        lua_pushstring(L, PQfname(res, col));
        lua_rawseti(L, -2, col + 1);
    }
    lua_setfield(L, -2, "columns");
    lua_createtable(L, ncols, 0);
    for (int col = 0; col < ncols; col++) {
        lua_pushinteger(L, (lua_Integer)PQftype(res, col));
        lua_rawseti(L, -2, col + 1);
    }
    lua_setfield(L, -2, "types");
}

/* Finishes a query or exec: rows, info on success, nil, errtable otherwise. */
static int
finish_statement(lua_State *L, Conn *c, double timeout, double deadline)
{
    struct wait_state ws = {.wait = atlas_wait_start(),
                            .deadline = deadline,
                            .cancel_at = 0,
                            .why = STOP_NONE,
                            .copy_refused = 0};
    ResultBox *box = push_result_box(L);
    if (!collect_results(c->conn, box, &ws)) {
        /* The server did not answer: the connection can carry nothing
         * more, so it is closed now rather than reused half-way. */
        push_connection_error(L, c->conn, "08006", "connection lost");
        mark_stop_reason(L, &ws, timeout);
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "connection_lost");
        PQfinish(c->conn);
        c->conn = NULL;
        return 2;
    }
    PGresult *res = box->res;
    if (ws.copy_refused) {
        push_connection_error(L, c->conn, "0A000", "");
        lua_pushliteral(L, "COPY FROM STDIN / TO STDOUT is not supported (COPY to or from a "
                           "server file, or SELECT, instead)");
        lua_setfield(L, -2, "message");
        return 2;
    }
    if (res == NULL)
        return push_connection_error(L, c->conn, "08006", "no result from server");
    ExecStatusType status = PQresultStatus(res);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK && status != PGRES_EMPTY_QUERY) {
        push_result_error(L, c->conn, res);
        mark_stop_reason(L, &ws, timeout);
        if (PQstatus(c->conn) == CONNECTION_BAD) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "connection_lost");
        }
        return 2;
    }
    push_rows(L, res);
    push_result_info(L, res);
    result_box_set(box, NULL);
    return 2;
}

static double
deadline_from(lua_State *L, int arg, double *timeout)
{
    *timeout = luaL_optnumber(L, arg, 0);
    return *timeout > 0 ? monotonic_seconds() + *timeout : 0;
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

/* conn:query(sql, params, nparams, timeout) -> rows, info | nil, err
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
    double timeout;
    double deadline = deadline_from(L, 5, &timeout);
    lua_settop(L, 5);
    luaL_checkstack(L, nparams + 8, "too many parameters");
    const char **values = push_scratch(L, sizeof(char *) * (size_t)nparams);
    for (int i = 0; i < nparams; i++) {
        lua_rawgeti(L, 3, i + 1);
        values[i] = param_text(L, lua_gettop(L), i + 1);
    }
    if (!PQsendQueryParams(c->conn, sql, nparams, NULL, values, NULL, NULL, 0))
        return push_connection_error(L, c->conn, "08006", "could not send the query");
    return finish_statement(L, c, timeout, deadline);
}

/* conn:exec(sql, timeout) -> rows, info | nil, err
 * Several statements in one string; rows and info are the last statement's. */
static int
conn_exec(lua_State *L)
{
    Conn *c = check_open(L);
    const char *sql = luaL_checkstring(L, 2);
    double timeout;
    double deadline = deadline_from(L, 3, &timeout);
    lua_settop(L, 3);
    if (!PQsendQuery(c->conn, sql))
        return push_connection_error(L, c->conn, "08006", "could not send the statements");
    return finish_statement(L, c, timeout, deadline);
}

/* conn:notices() -> list of "SEVERITY: message" since the last call, or nil */
static int
conn_notices(lua_State *L)
{
    Conn *c = luaL_checkudata(L, 1, CONN_MT);
    if (c->notice_count == 0 && c->notices_dropped == 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, c->notice_count + 1, 0);
    int i = 0;
    while (c->notices != NULL) {
        struct notice *n = c->notices;
        lua_pushstring(L, n->text);
        lua_rawseti(L, -2, ++i);
        c->notices = n->next;
        c->notice_count--;
        free(n);
    }
    c->notices_tail = &c->notices;
    if (c->notices_dropped > 0) {
        lua_pushfstring(L, "WARNING: %d more notices were dropped", c->notices_dropped);
        lua_rawseti(L, -2, ++i);
        c->notices_dropped = 0;
    }
    return 1;
}

/* conn:has_notices() -> true when conn:notices() has something to hand over;
 * lets the caller skip building an empty list on every query. */
static int
conn_has_notices(lua_State *L)
{
    Conn *c = luaL_checkudata(L, 1, CONN_MT);
    lua_pushboolean(L, c->notice_count > 0 || c->notices_dropped > 0);
    return 1;
}

/* conn:info() -> {host, port, dbname, user, server_version, backend_pid, ssl} */
static int
conn_info(lua_State *L)
{
    Conn *c = check_open(L);
    lua_createtable(L, 0, 8);
    set_connection_fields(L, c->conn);
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

/* conn:cancel() -> true: asks the server to cancel what it is running */
static int
conn_cancel(lua_State *L)
{
    Conn *c = check_open(L);
    send_cancel(c->conn);
    lua_pushboolean(L, 1);
    return 1;
}

static int
push_escaped(lua_State *L, PGconn *conn, char *escaped)
{
    if (escaped == NULL)
        return luaL_error(L, "cannot quote: %s", PQerrorMessage(conn));
    lua_pushstring(L, escaped);
    PQfreemem(escaped);
    return 1;
}

/* conn:quote_ident(s) -> "s", escaped for this connection's encoding */
static int
conn_quote_ident(lua_State *L)
{
    Conn *c = check_open(L);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    return push_escaped(L, c->conn, PQescapeIdentifier(c->conn, s, len));
}

/* conn:quote_literal(s) -> 's', escaped for this connection's encoding */
static int
conn_quote_literal(lua_State *L)
{
    Conn *c = check_open(L);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    return push_escaped(L, c->conn, PQescapeLiteral(c->conn, s, len));
}

/* Waits for PQconnectPoll to finish; Ctrl-C and the timeout abandon it. */
static int
await_connection(lua_State *L, Conn *c, double timeout)
{
    double deadline = timeout > 0 ? monotonic_seconds() + timeout : 0;
    atlas_wait wait = atlas_wait_start();
    PostgresPollingStatusType state = PGRES_POLLING_WRITING;
    while (state != PGRES_POLLING_OK) {
        if (state == PGRES_POLLING_FAILED)
            return push_connection_error(L, c->conn, "08001", "connection failed");
        double now = monotonic_seconds();
        if (atlas_wait_interrupted(&wait)) {
            push_connection_error(L, c->conn, "57014", "");
            lua_pushliteral(L, "connecting cancelled by Ctrl-C");
            lua_setfield(L, -2, "message");
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "interrupted");
            return 2;
        }
        if (deadline > 0 && now >= deadline) {
            push_connection_error(L, c->conn, "08001", "");
            lua_pushfstring(L, "could not connect within the %f s connect_timeout", timeout);
            lua_setfield(L, -2, "message");
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "timeout");
            return 2;
        }
        wait_socket(PQsocket(c->conn), state == PGRES_POLLING_WRITING,
                    deadline > 0 ? deadline - now : POLL_SLICE_SECONDS);
        state = PQconnectPoll(c->conn);
    }
    return 0;
}

/* pq.connect({keyword = value, ...}, timeout) -> conn | nil, err
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
    const char **keywords = push_scratch(L, sizeof(char *) * (size_t)(count + 1));
    const char **values = push_scratch(L, sizeof(char *) * (size_t)(count + 1));
    int i = 0;
    /* The strings stay alive: they are keys and values of the table at 1. */
    for (lua_pushnil(L); lua_next(L, 1); lua_pop(L, 1)) {
        keywords[i] = lua_tostring(L, -2);
        values[i] = lua_tostring(L, -1);
        i++;
    }
    keywords[i] = values[i] = NULL;

    /* Userdata first, marked closed: if anything below raises, __gc has
     * nothing or exactly one PGconn to free. */
    Conn *c = lua_newuserdatauv(L, sizeof *c, 0);
    c->conn = NULL;
    c->notices = NULL;
    c->notices_tail = &c->notices;
    c->notice_count = 0;
    c->notices_dropped = 0;
    luaL_setmetatable(L, CONN_MT);
    int conn_idx = lua_gettop(L);

    c->conn = PQconnectStartParams(keywords, values, 0);
    if (c->conn == NULL)
        return luaL_error(L, "out of memory");
    int failed = PQstatus(c->conn) == CONNECTION_BAD
                     ? push_connection_error(L, c->conn, "08001", "invalid connection parameters")
                     : await_connection(L, c, timeout);
    if (failed) {
        /* The error is built; free the socket now rather than at the next
         * garbage collection. */
        PQfinish(c->conn);
        c->conn = NULL;
        return failed;
    }
    PQsetNoticeReceiver(c->conn, notice_receiver, c);
    lua_pushvalue(L, conn_idx);
    return 1;
}

/* pq.conninfo_parse(s) -> {keyword = value} of the options s sets | nil, message */
static int
pq_conninfo_parse(lua_State *L)
{
    const char *conninfo = luaL_checkstring(L, 1);
    char *errmsg = NULL;
    PQconninfoOption *options = PQconninfoParse(conninfo, &errmsg);
    if (options == NULL) {
        lua_pushnil(L);
        if (errmsg != NULL) {
            push_trimmed(L, errmsg);
            PQfreemem(errmsg);
        } else {
            lua_pushliteral(L, "out of memory");
        }
        return 2;
    }
    /* Copy into a table before anything can raise, then free. */
    int count = 0;
    for (PQconninfoOption *o = options; o->keyword != NULL; o++)
        count++;
    if (!lua_checkstack(L, 2)) {
        PQconninfoFree(options);
        return luaL_error(L, "stack overflow");
    }
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
 * once and lives in the registry, freed by its box's __gc. */
static PGconn *
offline_conn(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, "atlas.pq.offline") == LUA_TUSERDATA) {
        PGconn *conn = ((Conn *)lua_touserdata(L, -1))->conn;
        lua_pop(L, 1);
        return conn;
    }
    lua_pop(L, 1);
    Conn *c = lua_newuserdatauv(L, sizeof *c, 0);
    c->conn = NULL;
    c->notices = NULL;
    c->notices_tail = &c->notices;
    c->notice_count = 0;
    c->notices_dropped = 0;
    luaL_setmetatable(L, CONN_MT);
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
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    PGconn *conn = offline_conn(L);
    return push_escaped(L, conn, PQescapeIdentifier(conn, s, len));
}

/* pq.quote_literal(s) -> 's' or E'...' (PQescapeLiteral, no connection needed) */
static int
pq_quote_literal(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    PGconn *conn = offline_conn(L);
    return push_escaped(L, conn, PQescapeLiteral(conn, s, len));
}

/* pq.libversion() -> integer, e.g. 150018 */
static int
pq_libversion(lua_State *L)
{
    lua_pushinteger(L, PQlibVersion());
    return 1;
}

static const luaL_Reg conn_methods[] = {
    {"query", conn_query},
    {"exec", conn_exec},
    {"notices", conn_notices},
    {"has_notices", conn_has_notices},
    {"info", conn_info},
    {"cancel", conn_cancel},
    {"quote_ident", conn_quote_ident},
    {"quote_literal", conn_quote_literal},
    {"close", conn_gc},
    {NULL, NULL},
};

/* tostring(conn) -> "atlas.pq.conn (user@host/dbname)" or "(closed)" */
static int
conn_tostring(lua_State *L)
{
    Conn *c = luaL_checkudata(L, 1, CONN_MT);
    if (c->conn == NULL)
        lua_pushliteral(L, "atlas.pq.conn (closed)");
    else
        lua_pushfstring(L, "atlas.pq.conn (%s@%s/%s)", PQuser(c->conn), PQhost(c->conn),
                        PQdb(c->conn));
    return 1;
}

static const luaL_Reg pq_functions[] = {
    {"connect", pq_connect},         {"conninfo_parse", pq_conninfo_parse},
    {"quote_ident", pq_quote_ident}, {"quote_literal", pq_quote_literal},
    {"libversion", pq_libversion},   {NULL, NULL},
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
    lua_pushcfunction(L, conn_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    luaL_newlib(L, pq_functions);
    return 1;
}
