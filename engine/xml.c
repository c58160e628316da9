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
#include <stdlib.h>
#include <string.h>

#include <expat.h>

#include "atlas.h"

#define MAX_DEPTH 200
#define PARSER_MT "atlas.xml.parser"
/* expat takes an int length; feed larger documents in pieces. */
#define CHUNK (1 << 30)
#define KEEP_TEXT (256u * 1024u)

struct xml_parser {
    XML_Parser parser; /* NULL when closed */
    lua_State *L;
    int keys;  /* stack index of "tag"; "attr", "text" and the shared empty attr table follow */
    int base;  /* stack index just below the root element */
    int depth; /* elements open; element d sits at base + d */
    char *text;
    size_t text_len, text_cap;
    size_t text_start[MAX_DEPTH + 1];
    lua_Integer children[MAX_DEPTH + 1];
    const char *stop_reason; /* why we stopped the parser ourselves */
    unsigned long stop_line, stop_column;
};

/* __gc and __close of the module's parser: safe to call twice. */
static int
parser_close(lua_State *L)
{
    struct xml_parser *x = luaL_checkudata(L, 1, PARSER_MT);
    if (x->parser != NULL) {
        XML_ParserFree(x->parser);
        x->parser = NULL;
    }
    free(x->text);
    x->text = NULL;
    x->text_len = x->text_cap = 0;
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

static void XMLCALL
on_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    struct xml_parser *x = ud;
    lua_State *L = x->L;
    int i, nattr = 0;

    if (x->stop_reason != NULL)
        return;
    if (x->depth >= MAX_DEPTH) {
        stop(x, "elements nested too deeply (limit 200)");
        return;
    }
    x->depth++;
    x->text_start[x->depth] = x->text_len;
    x->children[x->depth] = 0;
    luaL_checkstack(L, 4, "xml: nesting");
    for (i = 0; attrs[i] != NULL; i += 2)
        nattr++;
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, x->keys);
    lua_pushstring(L, local_name(name));
    lua_rawset(L, -3);
    lua_pushvalue(L, x->keys + 1);
    if (nattr == 0) {
        /* most AWS elements have no attributes: they share one frozen empty table */
        lua_pushvalue(L, x->keys + 3);
    } else {
        lua_createtable(L, 0, nattr);
        for (i = 0; attrs[i] != NULL; i += 2) {
            if (is_namespace_declaration(attrs[i]))
                continue;
            lua_pushstring(L, attrs[i + 1]);
            lua_setfield(L, -2, local_name(attrs[i]));
        }
    }
    lua_rawset(L, -3);
}

static void XMLCALL
on_text(void *ud, const XML_Char *s, int len)
{
    struct xml_parser *x = ud;
    if (x->stop_reason != NULL || x->depth == 0)
        return;
    if (x->text_len + (size_t)len > x->text_cap) {
        size_t cap = x->text_cap ? x->text_cap : 256;
        char *p;
        while (cap < x->text_len + (size_t)len)
            cap *= 2;
        p = realloc(x->text, cap);
        if (p == NULL) {
            stop(x, "out of memory");
            return;
        }
        x->text = p;
        x->text_cap = cap;
    }
    memcpy(x->text + x->text_len, s, (size_t)len);
    x->text_len += (size_t)len;
}

static int
is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Sets t.text on the element at the top of the stack (see the file header). */
static void
set_text(struct xml_parser *x, lua_State *L)
{
    size_t len = x->text_len - x->text_start[x->depth];
    size_t first = 0, end = len;
    const char *s;

    if (len == 0) /* also when no text was ever seen: text is NULL, and NULL + 0 is UB */
        return;
    s = x->text + x->text_start[x->depth];
    while (first < len && is_blank(s[first]))
        first++;
    if (first == len)
        return;
    if (x->children[x->depth] > 0) {
        while (end > first && is_blank(s[end - 1]))
            end--;
        lua_pushlstring(L, s + first, end - first);
    } else {
        lua_pushlstring(L, s, len);
    }
    lua_pushvalue(L, x->keys + 2);
    lua_insert(L, -2);
    lua_rawset(L, -3);
}

static void XMLCALL
on_end(void *ud, const XML_Char *name)
{
    struct xml_parser *x = ud;
    lua_State *L = x->L;

    if (x->stop_reason != NULL)
        return;
    set_text(x, L);
    x->text_len = x->text_start[x->depth];
    x->depth--;
    if (x->depth > 0) {
        /* append to the parent, just below on the stack */
        lua_rawseti(L, -2, ++x->children[x->depth]);
    }
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
    x->L = L;
    x->depth = 0;
    x->text_len = 0;
    x->stop_reason = NULL;
    return x;
}

/* The text buffer is reused between documents, unless one made it large. */
static void
release_large_text(struct xml_parser *x)
{
    if (x->text_cap > KEEP_TEXT) {
        free(x->text);
        x->text = NULL;
        x->text_cap = 0;
    }
    x->text_len = 0;
}

static int
push_error(lua_State *L, struct xml_parser *x)
{
    lua_pushnil(L);
    if (x->stop_reason != NULL)
        lua_pushfstring(L, "line %d column %d: %s", (int)x->stop_line, (int)x->stop_column,
                        x->stop_reason);
    else
        lua_pushfstring(L, "line %d column %d: %s", (int)XML_GetCurrentLineNumber(x->parser),
                        (int)XML_GetCurrentColumnNumber(x->parser) + 1,
                        XML_ErrorString(XML_GetErrorCode(x->parser)));
    return 2;
}

/* parse(s) -> root element, or nil, "line L column C: message" */
static int
l_parse(lua_State *L)
{
    size_t len, off = 0;
    const char *s = luaL_checklstring(L, 1, &len);
    struct xml_parser *x;

    lua_settop(L, 1);
    x = get_parser(L);
    lua_pushliteral(L, "tag");
    lua_pushliteral(L, "attr");
    lua_pushliteral(L, "text");
    lua_pushvalue(L, lua_upvalueindex(2));
    x->keys = 2;
    x->base = lua_gettop(L);
    do {
        size_t n = len - off > CHUNK ? CHUNK : len - off;
        int final = off + n == len;
        if (XML_Parse(x->parser, s + off, (int)n, final) != XML_STATUS_OK) {
            release_large_text(x);
            return push_error(L, x);
        }
        off += n;
    } while (off < len);
    release_large_text(x);
    if (lua_gettop(L) != x->base + 1) /* unreachable if expat accepted the document */
        return luaL_error(L, "xml: internal error: unbalanced tree");
    return 1;
}

static int
needs_escape(unsigned char c)
{
    return c == '&' || c == '<' || c == '>' || c == '"' || c == '\'' || c < 0x20;
}

/* escape(s) -> s with & < > " ' and line breaks / tabs as references, safe in text and in
 * attribute values. Other control characters cannot appear in XML 1.0 at all: misuse. */
static int
l_escape(lua_State *L)
{
    size_t len, i;
    const char *s = luaL_checklstring(L, 1, &len);
    luaL_Buffer b;

    for (i = 0; i < len && !needs_escape((unsigned char)s[i]); i++)
        ;
    if (i == len) {
        lua_settop(L, 1);
        return 1;
    }
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, s, i);
    for (; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '&':
            luaL_addstring(&b, "&amp;");
            break;
        case '<':
            luaL_addstring(&b, "&lt;");
            break;
        case '>':
            luaL_addstring(&b, "&gt;");
            break;
        case '"':
            luaL_addstring(&b, "&quot;");
            break;
        case '\'':
            luaL_addstring(&b, "&apos;");
            break;
        case '\t':
            luaL_addstring(&b, "&#9;");
            break;
        case '\n':
            luaL_addstring(&b, "&#10;");
            break;
        case '\r':
            luaL_addstring(&b, "&#13;");
            break;
        default:
            if (c < 0x20)
                return luaL_error(L, "xml.escape: control character %d is not allowed in XML 1.0",
                                  c);
            luaL_addchar(&b, (char)c);
        }
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
