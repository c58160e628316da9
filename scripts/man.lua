-- Writes the man page atlas-run(1) to stdout, from `atlas-run --help`: the
-- help text is the one owner of what the options, exit codes, environment
-- and files are, and the man page cannot drift from it.
-- Run by the build: atlas-run -e 'dofile("scripts/man.lua")' > atlas-run.1
local cli = require "atlas.run.cli"
local sys = require "atlas.sys"

local help = cli.HELP:format(sys.version)

local function roff(line)
    -- A leading dot or quote would be a request; backslashes and dashes are literal.
    line = line:gsub("\\", "\\e"):gsub("%-", "\\-")
    if line:find("^[.']") then line = "\\&" .. line end
    return line
end

local out = {}
local function add(s) out[#out + 1] = s end

local title, rest = help:match("^(.-)\n\n(.*)$")
add(string.format('.TH ATLAS-RUN 1 "" "atlas-run %s" "User Commands"', sys.version))
add(".SH NAME")
add(roff(title:gsub("^atlas%-run [^ ]+ %- ", "atlas-run - ")))
local HEADINGS = {
    ["Usage"] = "SYNOPSIS",
    ["Options"] = "OPTIONS",
    ["Examples"] = "EXAMPLES",
    ["Exit codes"] = "EXIT STATUS",
    ["Environment"] = "ENVIRONMENT",
    ["Files"] = "FILES",
}
local open = false
for line in (rest .. "\n"):gmatch("(.-)\n") do
    local heading = line:match("^(%u[%w ]-):$")
    if heading and HEADINGS[heading] then
        if open then add(".fi") end
        add(".SH " .. HEADINGS[heading])
        add(".nf")
        open = true
    elseif line == "" then
        if open then add("") end
    else
        if not open then
            add(".SH DESCRIPTION")
            add(".nf")
            open = true
        end
        add(roff(line))
    end
end
if open then add(".fi") end
add(".SH SEE ALSO")
add("README.md, docs/testing.md, docs/operations.md and docs/failover.md in the source tree.")
io.write(table.concat(out, "\n"), "\n")
