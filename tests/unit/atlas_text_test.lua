-- atlas.text: how a report shows a value, a SQL NULL and a missing one alike.
local t = require "atlas.test"
local atlas = require "atlas"

t.case("nil and atlas.null show as -, anything else as tostring does", function()
    t.eq({ atlas.text(nil), atlas.text(atlas.null), atlas.text(require("atlas.json").null) }, { "-", "-", "-" })
    t.eq({ atlas.text(0), atlas.text(false), atlas.text(""), atlas.text("idle"), atlas.text(2.5) }, { "0", "false", "", "idle", "2.5" })
end)
