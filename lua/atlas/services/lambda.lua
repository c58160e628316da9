-- Lambda Invoke. Payload may be a string or a table (sent as JSON); the
-- response is boto3's: StatusCode, FunctionError?, LogResult?, ExecutedVersion?,
-- and Payload as the raw string the function returned.
local helper = require "atlas.aws.helper"
local json = require "atlas.json"

local M = {}

-- invoke{FunctionName, Payload?, InvocationType?, LogType?, Qualifier?} -> response
function M.invoke(args)
    local copy = {}
    for k, v in pairs(args) do
        copy[k] = v
    end
    if type(copy.Payload) == "table" then copy.Payload = json.encode(copy.Payload) end
    return helper.call("lambda", "Invoke", copy)
end

-- get_function{FunctionName, Qualifier?} -> {Configuration=, Code=, Concurrency?=}
function M.get_function(args) return helper.call("lambda", "GetFunction", args) end

-- get_function_concurrency{FunctionName} -> {ReservedConcurrentExecutions=?} (absent: none reserved)
function M.get_function_concurrency(args) return helper.call("lambda", "GetFunctionConcurrency", args) end

return M
