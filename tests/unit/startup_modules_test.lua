-- The Lua modules a bare start-up loads are the ones cmake/embed.cmake places
-- side by side in the binary (startup_modules): a module that start-up starts
-- to load, or stops loading, must move in or out of that list, or the pages
-- around its source count in every run's RSS again (docs/benchmarks.md).
local t = require "atlas.test"

local function listed()
    local text = assert(t.read_file("cmake/embed.cmake"), "run from the source tree")
    local list = assert(text:match("set%(startup_modules%s+([^)]*)%)"), "no startup_modules in cmake/embed.cmake")
    local names = {}
    for path in list:gmatch("%S+") do
        names[#names + 1] = (path:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", "."))
    end
    table.sort(names)
    return names
end

t.case("start-up loads exactly the Lua modules cmake/embed.cmake embeds first", function()
    local r = t.run {
        "-e",
        [[local lua = {}
        for _, name in ipairs(require "atlas.embedded") do lua[name] = true end
        local names = {}
        for name in pairs(package.loaded) do
            if lua[name] then names[#names + 1] = name end
        end
        table.sort(names)
        print(table.concat(names, " "))]],
    }
    t.eq(r.code, 0, r.stderr)
    t.eq((r.stdout:gsub("%s+$", "")), table.concat(listed(), " "))
end)
