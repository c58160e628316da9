-- The four AWS wire protocols, without any I/O: build an HTTP request from
-- (service, action, params) and turn an HTTP response back into the table
-- boto3 would return (minus ResponseMetadata), or into an aws error object.
--
-- Shapes come from atlas.aws.shapes.<service>, generated from botocore's
-- models by scripts/gen-aws-shapes. JSON-protocol services only need input
-- shapes (to send empty lists and timestamps right): responses are JSON.
local json = require "atlas.json"
local errors = require "atlas.errors"

local M = {}

local ALIASES = {
    eventbridge = "events",
    monitoring = "cloudwatch",
    ["route 53"] = "route53",
    secrets = "secretsmanager",
    autoscaling = "application-autoscaling",
}

local loaded = {}

-- service(name) -> generated description of a service (cached), or raises.
function M.service(name)
    name = ALIASES[name] or name
    local svc = loaded[name]
    if svc then return svc end
    local ok, mod = pcall(require, "atlas.aws.shapes." .. name:gsub("-", "_"))
    if not ok then error("atlas.aws: unknown service '" .. tostring(name) .. "'", 3) end
    loaded[name] = mod
    return mod
end

function M.canonical_name(name) return ALIASES[name] or name end

local function operation(svc, action)
    local op = svc.operations[action]
    if not op then
        error(
            string.format(
                "atlas.aws: %s %s is not in the generated shapes (add it to scripts/gen-aws-shapes)",
                svc.name,
                tostring(action)
            ),
            3
        )
    end
    return op
end

-- ---- small encoders ----------------------------------------------------------

-- RFC 3986 unreserved characters stay; everything else is %XX (what SigV4 expects).
local function uri_escape(s, keep_slash)
    return (
        tostring(s)
            :gsub("[^%w%-%._~/]", function(c) return string.format("%%%02X", c:byte()) end)
            :gsub("/", keep_slash and "/" or "%%2F")
    )
end
M.uri_escape = uri_escape

-- atlas.xml owns XML escaping (and refuses what XML 1.0 cannot carry).
local function xml_escape(s) return require("atlas.xml").escape(tostring(s)) end

local function iso8601(v)
    if type(v) == "number" then
        local frac = v % 1
        if frac == 0 then return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(v)) end
        return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(v)) .. string.format(".%03dZ", math.floor(frac * 1000))
    end
    return tostring(v)
end

local function scalar_text(kind, v)
    if kind == "boolean" then return v and "true" or "false" end
    if kind == "timestamp" then return iso8601(v) end
    if math.type(v) == "float" and (kind == "integer" or kind == "long") then return string.format("%d", v) end
    return tostring(v)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64_INDEX = {}
for i = 1, 64 do
    B64_INDEX[B64:byte(i)] = i - 1
end

function M.base64_encode(s)
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local n = a * 65536 + (b or 0) * 256 + (c or 0)
        local q = { (n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63 }
        out[#out + 1] = B64:sub(q[1] + 1, q[1] + 1)
            .. B64:sub(q[2] + 1, q[2] + 1)
            .. (b and B64:sub(q[3] + 1, q[3] + 1) or "=")
            .. (c and B64:sub(q[4] + 1, q[4] + 1) or "=")
    end
    return table.concat(out)
end

function M.base64_decode(s)
    s = s:gsub("[^%w%+/]", "")
    local out, bits, nbits = {}, 0, 0
    for i = 1, #s do
        bits = (bits << 6) | B64_INDEX[s:byte(i)]
        nbits = nbits + 6
        if nbits >= 8 then
            nbits = nbits - 8
            out[#out + 1] = string.char((bits >> nbits) & 255)
        end
    end
    return table.concat(out)
end

local function shape_of(svc, name)
    local s = svc.shapes[name]
    if s == nil then error("atlas.aws: shape " .. tostring(name) .. " missing from " .. svc.name, 0) end
    return s
end

local function kind_of(shape) return type(shape) == "string" and shape or shape.t end

local function list_flattened(member, shape) return member and member.f or shape.f end

-- ---- query protocol: Action=X&Version=Y&Nested.member.1.Name=v --------------

local function query_flatten(svc, shape_name, value, prefix, out)
    local shape = shape_of(svc, shape_name)
    local kind = kind_of(shape)
    if kind == "structure" then
        for _, name in ipairs(shape.o) do
            local m = shape.m[name]
            local v = value[name]
            if v ~= nil then
                local wire = m.n or name
                local target = shape_of(svc, m.s)
                -- a flattened list named by its member's locationName (botocore query serializer rule)
                if kind_of(target) == "list" and list_flattened(m, target) and target.n then wire = target.n end
                query_flatten(svc, m.s, v, prefix and (prefix .. "." .. wire) or wire, out, m)
            end
        end
    elseif kind == "list" then
        if #value == 0 then
            out[#out + 1] = { prefix, "" }
            return
        end
        local item_prefix = shape.f and prefix or (prefix .. "." .. (shape.n or "member"))
        for i, v in ipairs(value) do
            query_flatten(svc, shape.m, v, item_prefix .. "." .. i, out)
        end
    elseif kind == "map" then
        local keys = {}
        for k in pairs(value) do
            keys[#keys + 1] = k
        end
        table.sort(keys)
        local entry = shape.f and prefix or (prefix .. ".entry")
        for i, k in ipairs(keys) do
            out[#out + 1] = { entry .. "." .. i .. "." .. (shape.kn or "key"), tostring(k) }
            query_flatten(svc, shape.v, value[k], entry .. "." .. i .. "." .. (shape.vn or "value"), out)
        end
    elseif kind == "blob" then
        out[#out + 1] = { prefix, M.base64_encode(value) }
    else
        out[#out + 1] = { prefix, scalar_text(kind, value) }
    end
end

-- application/x-www-form-urlencoded as botocore sends it (Python's urlencode): a space is "+".
local function form_escape(s)
    return (tostring(s):gsub("[^%w%-%._~ ]", function(c) return string.format("%%%02X", c:byte()) end):gsub(" ", "+"))
end

local function form_encode(pairs_list)
    local parts = {}
    for i, kv in ipairs(pairs_list) do
        parts[i] = form_escape(kv[1]) .. "=" .. form_escape(kv[2])
    end
    return table.concat(parts, "&")
end

local function build_query(svc, action, params)
    local op = operation(svc, action)
    local fields = { { "Action", action }, { "Version", svc.api_version } }
    if op.input then query_flatten(svc, op.input, params, nil, fields) end
    return {
        method = "POST",
        path = "/",
        query = "",
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8" },
        body = form_encode(fields),
    }
end

-- ---- json protocol -----------------------------------------------------------

-- Copies so that marking the top level as an object never touches the caller's table.
local function json_body(params)
    local copy = {}
    for k, v in pairs(params or {}) do
        copy[k] = v
    end
    return json.encode(json.object(copy))
end

-- "2026-11-26T02:00:00.5Z" -> 1795658400.5 (UTC; the offset, if any, is ignored: AWS sends Z)
function M.parse_time(s)
    if type(s) == "number" then return s end
    local y, mo, d, h, mi, sec = tostring(s):match("^(%d+)-(%d+)-(%d+)[T ](%d+):(%d+):(%d+%.?%d*)")
    if not y then return nil end
    y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
    -- days from civil (Howard Hinnant), independent of the local time zone
    y = mo <= 2 and y - 1 or y
    local era = (y >= 0 and y or y - 399) // 400
    local yoe = y - era * 400
    local doy = (153 * (mo + (mo > 2 and -3 or 9)) + 2) // 5 + d - 1
    local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    local days = era * 146097 + doe - 719468
    local seconds = tonumber(sec)
    return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + (math.tointeger(seconds) or seconds)
end

-- A JSON request value shaped by the model: lists become arrays even when
-- empty, timestamps epoch seconds, blobs base64. Unknown members pass as given.
local function json_value(svc, shape_name, v)
    local shape = svc.shapes[shape_name]
    local kind = shape and kind_of(shape)
    if type(v) == "table" then
        if kind == "structure" then
            local out = {}
            for k, x in pairs(v) do
                local m = shape.m[k]
                out[k] = m and json_value(svc, m.s, x) or x
            end
            return json.object(out)
        elseif kind == "list" then
            local out = {}
            for i, x in ipairs(v) do
                out[i] = json_value(svc, shape.m, x)
            end
            return json.array(out)
        elseif kind == "map" then
            local out = {}
            for k, x in pairs(v) do
                out[k] = json_value(svc, shape.v, x)
            end
            return json.object(out)
        end
    elseif kind == "timestamp" and type(v) == "string" then
        return M.parse_time(v) or v
    elseif kind == "blob" and type(v) == "string" then
        return M.base64_encode(v)
    end
    return v
end

local function build_json(svc, action, params)
    local op = svc.operations[action]
    local body
    if op and op.input then
        body = json.encode(json_value(svc, op.input, params))
    else
        body = json_body(params)
    end
    return {
        method = "POST",
        path = "/",
        query = "",
        headers = {
            ["Content-Type"] = "application/x-amz-json-" .. svc.json_version,
            ["X-Amz-Target"] = svc.target_prefix .. "." .. action,
        },
        body = body,
    }
end

-- ---- REST protocols ----------------------------------------------------------

-- boto3 accepts Route53 ids as returned ("/hostedzone/Z1", "/change/C2") and strips the prefix.
local function route53_id(v)
    return (
        tostring(v)
            :gsub("^/hostedzone/", "")
            :gsub("^/change/", "")
            :gsub("^/healthcheck/", "")
            :gsub("^/delegationset/", "")
    )
end

local function xml_serialize(svc, shape_name, value, tag, buf)
    local shape = shape_of(svc, shape_name)
    local kind = kind_of(shape)
    if kind == "structure" then
        buf[#buf + 1] = "<" .. tag .. ">"
        for _, name in ipairs(shape.o) do
            local m = shape.m[name]
            if value[name] ~= nil and not m.loc then
                local target = shape_of(svc, m.s)
                if kind_of(target) == "list" and list_flattened(m, target) then
                    for _, v in ipairs(value[name]) do
                        xml_serialize(svc, target.m, v, m.n or name, buf)
                    end
                else
                    xml_serialize(svc, m.s, value[name], m.n or name, buf)
                end
            end
        end
        buf[#buf + 1] = "</" .. tag .. ">"
    elseif kind == "list" then
        buf[#buf + 1] = "<" .. tag .. ">"
        for _, v in ipairs(value) do
            xml_serialize(svc, shape.m, v, shape.n or "member", buf)
        end
        buf[#buf + 1] = "</" .. tag .. ">"
    elseif kind == "map" then
        buf[#buf + 1] = "<" .. tag .. ">"
        for k, v in pairs(value) do
            buf[#buf + 1] = "<entry><"
                .. (shape.kn or "key")
                .. ">"
                .. xml_escape(k)
                .. "</"
                .. (shape.kn or "key")
                .. ">"
            xml_serialize(svc, shape.v, v, shape.vn or "value", buf)
            buf[#buf + 1] = "</entry>"
        end
        buf[#buf + 1] = "</" .. tag .. ">"
    else
        local text = kind == "blob" and M.base64_encode(value) or scalar_text(kind, value)
        buf[#buf + 1] = "<" .. tag .. ">" .. xml_escape(text) .. "</" .. tag .. ">"
    end
end

local function build_rest(svc, action, params)
    local op = operation(svc, action)
    local input = op.input and shape_of(svc, op.input) or { m = {}, o = {} }
    local path, literal_query = op.uri:match("^([^?]*)%??(.*)$")
    local query, headers, body_members = {}, {}, {}
    if literal_query ~= "" then query[#query + 1] = literal_query end
    for _, name in ipairs(input.o) do
        local m, v = input.m[name], params[name]
        if v ~= nil then
            local kind = kind_of(shape_of(svc, m.s))
            if m.loc == "uri" then
                if svc.name == "route53" then v = route53_id(v) end
                path = path:gsub(
                    "{" .. (m.n or name) .. "(%+?)}",
                    function(greedy) return uri_escape(scalar_text(kind, v), greedy == "+") end
                )
            elseif m.loc == "querystring" then
                local values = kind == "list" and v or { v }
                local item_kind = kind == "list" and kind_of(shape_of(svc, shape_of(svc, m.s).m)) or kind
                for _, item in ipairs(values) do
                    query[#query + 1] = uri_escape(m.n or name) .. "=" .. uri_escape(scalar_text(item_kind, item))
                end
            elseif m.loc == "header" then
                headers[m.n or name] = kind == "blob" and M.base64_encode(v) or scalar_text(kind, v)
            elseif m.loc == "headers" then
                for k, hv in pairs(v) do
                    headers[(m.n or "") .. k] = tostring(hv)
                end
            else
                body_members[#body_members + 1] = name
            end
        end
    end
    if path:find("{", 1, true) then
        error(string.format("atlas.aws: %s %s: missing URI parameter in %s", svc.name, action, path), 0)
    end
    table.sort(query)
    local req = { method = op.method, path = path, query = table.concat(query, "&"), headers = headers }
    local payload = input.payload
    if payload then
        local v = params[payload]
        if v ~= nil then
            local pkind = kind_of(shape_of(svc, input.m[payload].s))
            if pkind == "structure" then
                if svc.protocol == "rest-xml" then
                    local buf = {}
                    xml_serialize(svc, input.m[payload].s, v, input.m[payload].n or payload, buf)
                    req.body = table.concat(buf)
                else
                    req.body = json_body(v)
                    headers["Content-Type"] = "application/json"
                end
            else
                req.body = tostring(v)
                -- without one, libcurl would label a POST body application/x-www-form-urlencoded
                headers["Content-Type"] = headers["Content-Type"] or "application/octet-stream"
            end
        end
    elseif #body_members > 0 then
        if svc.protocol == "rest-xml" then
            local inner = {}
            for _, name in ipairs(body_members) do
                inner[name] = params[name]
            end
            local buf = {}
            xml_serialize(svc, op.input, inner, op.input_root or op.input, buf)
            if op.input_ns then buf[1] = buf[1]:sub(1, -2) .. ' xmlns="' .. op.input_ns .. '">' end
            req.body = '<?xml version="1.0" encoding="UTF-8"?>' .. table.concat(buf)
            headers["Content-Type"] = "application/xml"
        else
            local inner = {}
            for _, name in ipairs(body_members) do
                inner[(input.m[name].n or name)] = params[name]
            end
            req.body = json_body(inner)
            headers["Content-Type"] = "application/json"
        end
    end
    req.body = req.body or ""
    return req
end

-- build(service, action, params) -> {method, path, query, headers, body}
function M.build(svc, action, params)
    params = params or {}
    local p = svc.protocol
    if p == "json" then return build_json(svc, action, params) end
    if p == "query" then return build_query(svc, action, params) end
    if p == "rest-xml" or p == "rest-json" then return build_rest(svc, action, params) end
    error("atlas.aws: protocol " .. tostring(p) .. " not supported", 2)
end

-- ---- XML decoding by shape ---------------------------------------------------

local function local_name(tag) return tag:match("([^:%s]+)$") end

local function node_text(node)
    if node.text then return node.text end
    return ""
end

local function to_integer(text)
    local n = tonumber(text)
    if n == nil then return text end
    return math.tointeger(n) or n
end

local decode_xml

-- Maps wire element names to member names, once per structure shape.
local wire_index = setmetatable({}, { __mode = "k" })

local function structure_index(svc, shape)
    local idx = wire_index[shape]
    if idx then return idx end
    idx = {}
    for name, m in pairs(shape.m) do
        if not m.loc then
            local wire = m.n or name
            local target = shape_of(svc, m.s)
            if kind_of(target) == "list" and list_flattened(m, target) and target.n then wire = target.n end
            idx[wire] = name
        end
    end
    wire_index[shape] = idx
    return idx
end

local function decode_structure(svc, shape, node)
    local out, idx = {}, structure_index(svc, shape)
    for name, m in pairs(shape.m) do
        if m.attr and node.attr and node.attr[m.n or name] then
            out[name] = decode_xml(svc, m.s, { text = node.attr[m.n or name] })
        end
    end
    for _, child in ipairs(node) do
        local name = idx[local_name(child.tag)]
        if name then
            local m = shape.m[name]
            local target = shape_of(svc, m.s)
            if kind_of(target) == "list" and list_flattened(m, target) then
                local list = out[name] or json.array({})
                list[#list + 1] = decode_xml(svc, target.m, child)
                out[name] = list
            else
                out[name] = decode_xml(svc, m.s, child)
            end
        end
    end
    return out
end

local function child_named(node, name)
    for _, child in ipairs(node) do
        if local_name(child.tag) == name then return child end
    end
end

decode_xml = function(svc, shape_name, node)
    local shape = shape_of(svc, shape_name)
    local kind = kind_of(shape)
    if kind == "structure" then return decode_structure(svc, shape, node) end
    if kind == "list" then
        local list = json.array({})
        for i, child in ipairs(node) do
            list[i] = decode_xml(svc, shape.m, child)
        end
        return list
    end
    if kind == "map" then
        local map = {}
        local entries = {}
        if shape.f then
            entries = { node }
        else
            for i, c in ipairs(node) do
                entries[i] = c
            end
        end
        for _, entry in ipairs(entries) do
            local k = child_named(entry, shape.kn or "key")
            local v = child_named(entry, shape.vn or "value")
            if k then map[node_text(k)] = v and decode_xml(svc, shape.v, v) or "" end
        end
        return map
    end
    local text = node_text(node)
    if kind == "integer" or kind == "long" then return to_integer(text) end
    if kind == "float" or kind == "double" or kind == "bigdecimal" then return tonumber(text) or text end
    if kind == "boolean" then return text == "true" end
    if kind == "blob" then return M.base64_decode(text) end
    return text
end

M.decode_xml = decode_xml

local xml_parse
local function parse_xml(body)
    xml_parse = xml_parse or require("atlas.xml").parse
    return xml_parse(body)
end

-- ---- response decoding -------------------------------------------------------

local function bad_response(svc, action, why)
    return errors.new {
        kind = "aws",
        code = "InvalidResponse",
        message = why,
        service = svc.name,
        action = action,
        retryable = false,
    }
end

local function header_value(kind, text)
    if kind == "integer" or kind == "long" then return to_integer(text) end
    if kind == "boolean" then return text == "true" end
    if kind == "float" or kind == "double" then return tonumber(text) end
    return text
end

-- Members bound to HTTP headers and the status code (REST protocols).
local function rest_members(svc, shape, resp, out)
    for name, m in pairs(shape.m) do
        if m.loc == "header" then
            local v = resp.headers[(m.n or name):lower()]
            if v ~= nil then out[name] = header_value(kind_of(shape_of(svc, m.s)), v) end
        elseif m.loc == "statusCode" then
            out[name] = resp.status
        end
    end
end

-- The reply's document, when it is the one the operation answers with:
-- a proxy's HTML page or an empty 200 is an error, never an empty result
-- (the generated shapes name each operation's root element).
local function reply_root(svc, op, action, resp)
    if resp.body == "" then
        return nil, bad_response(svc, action, "empty reply, expected <" .. op.output_root .. ">")
    end
    local root, msg = parse_xml(resp.body)
    if not root then return nil, bad_response(svc, action, "malformed XML: " .. tostring(msg)) end
    local got = local_name(root.tag)
    if got ~= op.output_root then
        return nil, bad_response(svc, action, "expected <" .. op.output_root .. ">, got <" .. got .. ">")
    end
    return root
end

local function decode_query(svc, op, action, resp)
    if not op.output then return {} end
    local root, err
    if op.output_root then
        root, err = reply_root(svc, op, action, resp)
        if not root then return nil, err end
    else
        local msg
        root, msg = parse_xml(resp.body)
        if not root then return nil, bad_response(svc, action, "malformed XML: " .. tostring(msg)) end
    end
    local node = root
    if op.result_wrapper then
        node = child_named(root, op.result_wrapper)
        if not node then return {} end
    end
    return decode_xml(svc, op.output, node)
end

-- json_object(svc, action, body) -> the JSON object a reply's body holds |
-- nil, InvalidResponse. Every JSON output (and every structure payload) is an
-- object: anything else (a bare number, an array, a string) would surface
-- later as a nil field deep in a helper, or as a crash indexing a number.
local function json_object(svc, action, body)
    local v, msg = json.decode(body)
    if v == nil then return nil, bad_response(svc, action, "malformed JSON: " .. msg) end
    if type(v) ~= "table" or json.is_array(v) then
        local got = type(v) == "table" and "an array" or type(v)
        return nil, bad_response(svc, action, "expected a JSON object, got " .. got)
    end
    return v
end

local function decode_rest(svc, op, action, resp)
    if not op.output then return {} end
    local shape = shape_of(svc, op.output)
    local out
    local payload = shape.payload
    if payload then
        local pshape = shape_of(svc, shape.m[payload].s)
        out = {}
        if kind_of(pshape) == "structure" then
            if resp.body ~= "" then
                if svc.protocol == "rest-xml" then
                    local root, msg = parse_xml(resp.body)
                    if not root then return nil, bad_response(svc, action, "malformed XML: " .. tostring(msg)) end
                    out[payload] = decode_xml(svc, shape.m[payload].s, root)
                else
                    local v, err = json_object(svc, action, resp.body)
                    if v == nil then return nil, err end
                    out[payload] = v
                end
            end
        else
            out[payload] = resp.body
        end
    elseif svc.protocol == "rest-xml" then
        if op.output_root then
            local root, err = reply_root(svc, op, action, resp)
            if not root then return nil, err end
            out = decode_xml(svc, op.output, root)
        elseif resp.body ~= "" then
            local root, msg = parse_xml(resp.body)
            if not root then return nil, bad_response(svc, action, "malformed XML: " .. tostring(msg)) end
            out = decode_xml(svc, op.output, root)
        else
            out = {}
        end
    elseif resp.body ~= "" then
        local v, err = json_object(svc, action, resp.body)
        if v == nil then return nil, err end
        out = M.strip_nulls(v) -- strip_nulls is defined below
    else
        out = {}
    end
    rest_members(svc, shape, resp, out)
    return out
end

-- ---- errors ------------------------------------------------------------------

local function find_element(node, name)
    if local_name(node.tag) == name then return node end
    for _, child in ipairs(node) do
        local found = find_element(child, name)
        if found then return found end
    end
end

-- "com.amazonaws.ecs#ServiceNotFoundException" and
-- "ServiceNotFoundException:http://internal.amazon.com/..." both mean ServiceNotFoundException.
local function clean_code(code)
    if not code then return nil end
    code = tostring(code):gsub(":.*$", "")
    return (code:gsub("^.*#", ""))
end

local function json_error(resp)
    local body = json.decode(resp.body ~= "" and resp.body or "{}")
    if type(body) ~= "table" then body = {} end
    local code = clean_code(resp.headers["x-amzn-errortype"])
        or clean_code(body.__type)
        or clean_code(body.code)
        or clean_code(body.Code)
    return code, body.message or body.Message or body.errorMessage
end

local function xml_error(resp)
    if resp.body == "" then return nil end
    local ok, root = pcall(parse_xml, resp.body)
    if not ok or not root then return nil end
    local code_node = find_element(root, "Code")
    local msg_node = find_element(root, "Message") or find_element(root, "message")
    local rid = find_element(root, "RequestId") or find_element(root, "RequestID")
    local code, message = code_node and node_text(code_node), msg_node and node_text(msg_node)
    local root_name = local_name(root.tag)
    local messages = find_element(root, "Messages")
    if not code and messages and root_name ~= "ErrorResponse" and root_name ~= "Error" then
        -- Route53's <InvalidChangeBatch><Messages><Message>..</Message>..</Messages>: the root
        -- names the error and every message counts (an HTML error page has no Messages)
        code = root_name
        local texts = {}
        for _, m in ipairs(messages) do
            texts[#texts + 1] = node_text(m)
        end
        message = table.concat(texts, "; ")
    end
    return code, message, rid and node_text(rid)
end

local REASONS = {
    [400] = "Bad Request",
    [403] = "Forbidden",
    [404] = "Not Found",
    [429] = "Too Many Requests",
    [500] = "Internal Server Error",
    [502] = "Bad Gateway",
    [503] = "Service Unavailable",
    [504] = "Gateway Timeout",
}

-- error_from(svc, action, region, resp) -> aws error object for a non-2xx response.
function M.error_from(svc, action, region, resp)
    local code, message, rid
    if svc.protocol == "json" or svc.protocol == "rest-json" then
        code, message = json_error(resp)
    else
        code, message, rid = xml_error(resp)
    end
    rid = resp.headers["x-amzn-requestid"]
        or resp.headers["x-amz-request-id"]
        or resp.headers["x-amzn-request-id"]
        or rid
    local retry_after = tonumber(resp.headers["retry-after"] or "")
    return errors.new {
        kind = "aws",
        code = code or tostring(resp.status),
        message = message or REASONS[resp.status] or ("HTTP " .. tostring(resp.status)),
        status = resp.status,
        request_id = rid,
        service = svc.name,
        action = action,
        region = region,
        retry_after = retry_after,
        retryable = false,
    }
end

-- JSON null members become absent, as boto3's None is the absence of a value
-- in Lua: `if resp.nextToken then` must not see a null cursor as a token.
local function strip_nulls(v)
    if type(v) ~= "table" then return v end
    for k, x in pairs(v) do
        if x == json.null then
            v[k] = nil
        elseif type(x) == "table" then
            strip_nulls(x)
        end
    end
    return v
end
M.strip_nulls = strip_nulls

-- decode(svc, action, region, resp) -> response table | nil, err
function M.decode(svc, action, region, resp)
    if resp.status < 200 or resp.status >= 300 then return nil, M.error_from(svc, action, region, resp) end
    local p = svc.protocol
    if p == "json" then
        if resp.body == "" then
            -- botocore reads an empty body as {}; for an operation that
            -- answers a document it is a cut or proxied reply, and taken as
            -- an answer it would be journalled and replayed by every resume.
            local op = svc.operations[action]
            if op and op.has_output then
                return nil, bad_response(svc, action, "empty reply, expected a JSON document")
            end
            return {}
        end
        local v, err = json_object(svc, action, resp.body)
        if v == nil then return nil, err end
        -- most documents have no null at all: skip the walk then
        if resp.body:find("null", 1, true) then strip_nulls(v) end
        return v
    end
    local op = operation(svc, action)
    local ok, v, err
    if p == "query" then
        ok, v, err = pcall(decode_query, svc, op, action, resp)
    else
        ok, v, err = pcall(decode_rest, svc, op, action, resp)
    end
    if not ok then return nil, bad_response(svc, action, tostring(v)) end
    if v == nil then return nil, err end
    return v
end

return M
