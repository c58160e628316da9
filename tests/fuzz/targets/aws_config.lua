-- The ~/.aws config and credentials reader (atlas.aws.credentials.parse_ini) on any file
-- text, read both as a credentials file and as a config file. Property: sections of
-- lower-cased string keys and string values; never a raise.
local credentials = require "atlas.aws.credentials"

return function(data)
    for _, is_config in ipairs { false, true } do
        local ok, sections = pcall(credentials.parse_ini, data, is_config)
        if not ok then fuzz.fail("parse_ini raised: " .. tostring(sections)) end
        for name, settings in pairs(sections) do
            if type(name) ~= "string" or type(settings) ~= "table" then fuzz.fail("odd section") end
            for k, v in pairs(settings) do
                if type(k) ~= "string" or type(v) ~= "string" or k ~= k:lower() then fuzz.fail("odd setting") end
            end
        end
    end
end
