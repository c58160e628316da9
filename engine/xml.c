/*
 * atlas.xml: expat into plain Lua tables, for AWS query and rest-xml responses.
 *
 * An element is {tag = "Name", attr = {name = value}, text = ..., [1..n] = child elements}.
 * Namespace prefixes are dropped from tag and attribute names and xmlns declarations are
 * not reported: AWS documents use one default namespace, and the AWS layer matches members
 * by their local name. Text is the element's own character data, concatenated:
 *   - nil when it is empty or only whitespace (indentation between tags);
 *   - trimmed when the element has child elements (mixed content is formatting);
 *   - exact for a leaf, because a value may legitimately start or end with a space.
 * A DOCTYPE is refused: no AWS response has one, and refusing it closes the door on entity
 * expansion tricks. Nesting deeper than MAX_DEPTH is refused, so no input can exhaust the
 * C or Lua stack.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>

#include "atlas.h"

#define MAX_DEPTH 200
#define PARSER_MT "atlas.xml.parser"
/* expat takes an int length; feed larger documents in pieces. */
#define CHUNK (1 << 30)
/* Buffers above this size are released after a document instead of kept for the next. */
#define KEEP_BUFFER (256u * 1024u)

struct buffer {
    char *data;
    size_t len, cap;
};

/* expat's callbacks never touch Lua (a Lua error would longjmp through expat): they record
 * the document as a list of events in C memory, and l_parse builds the tables from it once
 * expat is done. An event is
 *   'S' tag NUL <uint32 count> (name NUL value NUL){count}    an element starts
 *   'E' <size_t length> text                                  it ends, with its own text
 * where a length of SIZE_MAX means "no text". */
struct xml_parser {
    XML_Parser parser; /* NULL when closed */
    struct buffer events;
    struct buffer text; /* character data of the open elements, innermost last */
    int depth;          /* elements open */
    size_t text_start[MAX_DEPTH + 1];
    int has_children[MAX_DEPTH + 1];
    const char *stop_reason; /* why we stopped the parser ourselves */
    unsigned long stop_line, stop_column;
};

static void
buffer_free(struct buffer *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static int
buffer_append(struct buffer *b, const void *s, size_t len)
{
    if (len > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;
        while (cap - b->len < len)
            cap *= 2;
        if ((p = realloc(b->data, cap)) == NULL)
            return 0;
        b->data = p;
        b->cap = cap;
    }
    if (len > 0)
        memcpy(b->data + b->len, s, len);
    b->len += len;
    return 1;
}

/* __gc and __close of the module's parser: safe to call twice. */
static int
parser_close(lua_State *L)
{
    struct xml_parser *x = luaL_checkudata(L, 1, PARSER_MT);
    if (x->parser != NULL) {
        XML_ParserFree(x->parser);
        x->parser = NULL;
    }
    buffer_free(&x->events);
    buffer_free(&x->text);
    return 0;
}

static void
stop(struct xml_parser *x, const char *reason)
{
    if (x->stop_reason == NULL) {
        x->stop_reason = reason;
        x->stop_line = XML_GetCurrentLineNumber(x->parser);
        x->stop_column = XML_GetCurrentColumnNumber(x->parser) + 1;
    }
    XML_StopParser(x->parser, XML_FALSE);
}

static const char *
local_name(const char *name)
{
    const char *colon = strrchr(name, ':');
    return colon ? colon + 1 : name;
}

static int
is_namespace_declaration(const char *name)
{
    return strncmp(name, "xmlns", 5) == 0 && (name[5] == '\0' || name[5] == ':');
}

static int
append_string(struct buffer *b, const char *s)
{
    return buffer_append(b, s, strlen(s) + 1);
}

static void XMLCALL
on_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    struct xml_parser *x = ud;
    uint32_t count = 0;
    int i, ok;

    if (x->stop_reason != NULL)
        return;
    if (x->depth >= MAX_DEPTH) {
        stop(x, "elements nested too deeply (limit 200)");
        return;
    }
    x->has_children[x->depth] = 1;
    x->depth++;
    x->text_start[x->depth] = x->text.len;
    x->has_children[x->depth] = 0;
    for (i = 0; attrs[i] != NULL; i += 2)
        count += !is_namespace_declaration(attrs[i]);
    ok = buffer_append(&x->events, "S", 1) && append_string(&x->events, local_name(name)) &&
         buffer_append(&x->events, &count, sizeof count);
    for (i = 0; ok && attrs[i] != NULL; i += 2)
        if (!is_namespace_declaration(attrs[i]))
            ok = append_string(&x->events, local_name(attrs[i])) &&
                 append_string(&x->events, attrs[i + 1]);
    if (!ok)
        stop(x, "out of memory");
}

static void XMLCALL
on_text(void *ud, const XML_Char *s, int len)
{
    struct xml_parser *x = ud;
    if (x->stop_reason == NULL && x->depth > 0 && !buffer_append(&x->text, s, (size_t)len))
        stop(x, "out of memory");
}

static int
is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Records the end of the innermost element with its text (see the file header). */
static void XMLCALL
on_end(void *ud, const XML_Char *name)
{
    struct xml_parser *x = ud;
    size_t start, len, first = 0, end;
    const char *s;

    if (x->stop_reason != NULL)
        return;
    start = x->text_start[x->depth];
    len = end = x->text.len - start;
    s = len > 0 ? x->text.data + start : "";

    while (first < len && is_blank(s[first]))
        first++;
    if (first == len) {
        first = 0;
        end = SIZE_MAX; /* no text */
    } else if (x->has_children[x->depth]) {
        while (end > first && is_blank(s[end - 1]))
            end--;
    } else {
        first = 0;
    }
    len = end == SIZE_MAX ? SIZE_MAX : end - first;
    if (!buffer_append(&x->events, "E", 1) || !buffer_append(&x->events, &len, sizeof len) ||
        (len != SIZE_MAX && !buffer_append(&x->events, s + first, len)))
        stop(x, "out of memory");
    x->text.len = start;
    x->depth--;
}

static void XMLCALL
on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
           int has_internal_subset)
{
    stop(ud, "DOCTYPE is not allowed");
}

static struct xml_parser *
get_parser(lua_State *L)
{
    struct xml_parser *x = lua_touserdata(L, lua_upvalueindex(1));
    if (x->parser == NULL) {
        x->parser = XML_ParserCreate("UTF-8");
        if (x->parser == NULL)
            luaL_error(L, "xml: out of memory");
    } else {
        XML_ParserReset(x->parser, "UTF-8");
    }
    XML_SetUserData(x->parser, x);
    XML_SetElementHandler(x->parser, on_start, on_end);
    XML_SetCharacterDataHandler(x->parser, on_text);
    XML_SetStartDoctypeDeclHandler(x->parser, on_doctype);
    x->depth = 0;
    x->events.len = x->text.len = 0;
    x->stop_reason = NULL;
    return x;
}

static void
release_large_buffers(struct xml_parser *x)
{
    if (x->events.cap > KEEP_BUFFER)
        buffer_free(&x->events);
    if (x->text.cap > KEEP_BUFFER)
        buffer_free(&x->text);
}

static int
push_error(lua_State *L, struct xml_parser *x)
{
    unsigned long line = x->stop_line, column = x->stop_column;
    const char *reason = x->stop_reason;
    if (reason == NULL) {
        line = XML_GetCurrentLineNumber(x->parser);
        column = XML_GetCurrentColumnNumber(x->parser) + 1;
        reason = XML_ErrorString(XML_GetErrorCode(x->parser));
    }
    lua_pushnil(L);
    lua_pushfstring(L, "line %d column %d: %s", (int)line, (int)column, reason);
    lua_pushliteral(L, "malformed");
    return 3;
}

/* Builds the element tables from the recorded events; the root is left on the stack.
 * Upvalue 2 is the shared, frozen attr table of elements without attributes. */
static void
push_tree(lua_State *L, const struct buffer *events)
{
    const char *p = events->data, *end = events->data + events->len;
    lua_Integer children[MAX_DEPTH + 1];
    int depth = 0;

    luaL_checkstack(L, MAX_DEPTH + 8, "xml: nesting");
    while (p < end) {
        if (*p++ == 'S') {
            uint32_t count, i;
            lua_createtable(L, 0, 3);
            lua_pushstring(L, p);
            lua_setfield(L, -2, "tag");
            p += strlen(p) + 1;
            memcpy(&count, p, sizeof count);
            p += sizeof count;
            if (count == 0) {
                lua_pushvalue(L, lua_upvalueindex(2));
            } else {
                lua_createtable(L, 0, (int)count);
                for (i = 0; i < count; i++) {
                    const char *name = p;
                    p += strlen(p) + 1;
                    lua_pushstring(L, p);
                    lua_setfield(L, -2, name);
                    p += strlen(p) + 1;
                }
            }
            lua_setfield(L, -2, "attr");
            children[++depth] = 0;
        } else {
            size_t len;
            memcpy(&len, p, sizeof len);
            p += sizeof len;
            if (len != SIZE_MAX) {
                lua_pushlstring(L, p, len);
                lua_setfield(L, -2, "text");
                p += len;
            }
            if (--depth > 0)
                lua_rawseti(L, -2, ++children[depth]);
        }
    }
}

/* parse(s) -> root element, or nil, "line L column C: message", "malformed" */
static int
l_parse(lua_State *L)
{
    size_t len, off = 0;
    const char *s = luaL_checklstring(L, 1, &len);
    struct xml_parser *x = get_parser(L);

    do {
        size_t n = len - off > CHUNK ? CHUNK : len - off;
        int final = off + n == len;
        if (XML_Parse(x->parser, s + off, (int)n, final) != XML_STATUS_OK) {
            release_large_buffers(x);
            return push_error(L, x);
        }
        off += n;
    } while (off < len);
    lua_settop(L, 1);
    push_tree(L, &x->events);
    release_large_buffers(x);
    return 1;
}

/* The references escape() writes, by byte; other bytes below 0x20 cannot appear in XML 1.0. */
static const char *const references[128] = {
    ['&'] = "&amp;",   ['<'] = "&lt;",  ['>'] = "&gt;",   ['"'] = "&quot;",
    ['\''] = "&apos;", ['\t'] = "&#9;", ['\n'] = "&#10;", ['\r'] = "&#13;",
};

/* escape(s) -> s with & < > " ' and line breaks / tabs as references, safe in text and in
 * attribute values. Other control characters cannot appear in XML 1.0 at all: misuse. */
static int
l_escape(lua_State *L)
{
    size_t len, i;
    const char *s = luaL_checklstring(L, 1, &len);
    luaL_Buffer b;

    luaL_buffinit(L, &b);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 128 && references[c] != NULL)
            luaL_addstring(&b, references[c]);
        else if (c < 0x20)
            return luaL_error(L, "xml.escape: control character %d is not allowed in XML 1.0", c);
        else
            luaL_addchar(&b, (char)c);
    }
    luaL_pushresult(&b);
    return 1;
}

static int
frozen_newindex(lua_State *L)
{
    return luaL_error(L, "xml: the attr table of an element without attributes is read-only");
}

int
luaopen_atlas_xml(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"parse", l_parse},
        {"escape", l_escape},
        {NULL, NULL},
    };
    static const luaL_Reg parser_meta[] = {
        {"__gc", parser_close},
        {"__close", parser_close},
        {NULL, NULL},
    };
    struct xml_parser *x;

    luaL_newlibtable(L, funcs);
    /* One parser per Lua state, reset between documents; created closed, opened lazily. */
    x = lua_newuserdatauv(L, sizeof *x, 0);
    memset(x, 0, sizeof *x);
    if (luaL_newmetatable(L, PARSER_MT))
        luaL_setfuncs(L, parser_meta, 0);
    lua_setmetatable(L, -2);
    /* the attr table of elements without attributes: shared, so it refuses writes */
    lua_createtable(L, 0, 0);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, frozen_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, -2);
    luaL_setfuncs(L, funcs, 2);
    return 1;
}
