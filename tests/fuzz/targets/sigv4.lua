-- sigv4.sign on requests cut from the input: fields are strings or, when they read as
-- numbers, numbers. Properties: signing is deterministic, and a number signs as its text.
local sigv4 = require "atlas.aws.sigv4"

local function fields(data)
    local parts = {}
    for part in (data .. "\n"):gmatch("([^\n]*)\n") do
        parts[#parts + 1] = part
    end
    return parts
end

-- A field that reads as an integer is that number, or with as_text, the number's own text
-- ("0678" is 678, whose text is "678").
local function request(parts, as_text)
    local function field(i, default)
        local v = parts[i] or default
        local n = math.tointeger(tonumber(v))
        if n then return as_text and tostring(n) or n end
        return v
    end
    local headers = {}
    for i = 9, #parts, 2 do
        if parts[i] ~= "" then headers[parts[i]] = field(i + 1, "") end
    end
    return {
        method = field(1, "GET"),
        url = "https://host.example" .. (parts[2] or "/"),
        region = field(3, "us-east-1"),
        service = field(4, "ecs"),
        body = field(5, ""),
        time = 1700000000,
        credentials = { access_key_id = field(6, "AKID"), secret_access_key = field(7, "secret"), session_token = parts[8] },
        headers = headers,
    }
end

return function(data)
    local parts = fields(data)
    local ok, h1, d1 = pcall(sigv4.sign, request(parts, false))
    if not ok then return end -- misuse (an odd url, a header that is not text) raises
    local h2, d2 = sigv4.sign(request(parts, false))
    local h3, d3 = sigv4.sign(request(parts, true))
    if h1.Authorization ~= h2.Authorization or d1.canonical_request ~= d2.canonical_request then
        fuzz.fail("two signatures of one request differ")
    end
    if h1.Authorization ~= h3.Authorization then fuzz.fail("a number signs differently from its text") end
    if not d1.canonical_request:find("^[^\n]*\n/") then fuzz.fail("canonical URI does not start with /") end
end
