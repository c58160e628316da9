-- DynamoDB helpers. Arguments: region (+ profile, endpoint) and DynamoDB's
-- own parameters, as in boto3 (TableName, Item, Key, ConditionExpression,
-- ExpressionAttributeValues, ...). Items are in DynamoDB's typed form
-- ({LockID = {S = "x"}}); marshal/unmarshal convert plain tables.
local helper = require "atlas.aws.helper"

local M = {}

-- marshal{name = string|number|boolean} -> {name = {S=}|{N=}|{BOOL=}}
function M.marshal(values)
    local item = {}
    for k, v in pairs(values) do
        if type(v) == "number" then
            item[k] = { N = math.type(v) == "integer" and string.format("%d", v) or tostring(v) }
        elseif type(v) == "boolean" then
            item[k] = { BOOL = v }
        else
            item[k] = { S = tostring(v) }
        end
    end
    return item
end

-- unmarshal(item) -> plain table: S and N (as a number) and BOOL; other types as given
function M.unmarshal(item)
    if item == nil then return nil end
    local out = {}
    for k, v in pairs(item) do
        if v.S ~= nil then
            out[k] = v.S
        elseif v.N ~= nil then
            out[k] = tonumber(v.N)
        elseif v.BOOL ~= nil then
            out[k] = v.BOOL
        else
            out[k] = v
        end
    end
    return out
end

-- put_item{region, TableName, Item, ConditionExpression?, ExpressionAttributeValues?, ...} -> response
-- A condition that does not hold raises ConditionalCheckFailedException.
function M.put_item(args) return helper.call("dynamodb", "PutItem", args) end

-- get_item{region, TableName, Key, ConsistentRead?} -> {Item = ...} (no Item when absent)
function M.get_item(args) return helper.call("dynamodb", "GetItem", args) end

-- update_item{region, TableName, Key, UpdateExpression, ConditionExpression?, ...} -> response
function M.update_item(args) return helper.call("dynamodb", "UpdateItem", args) end

-- delete_item{region, TableName, Key, ConditionExpression?, ...} -> response
function M.delete_item(args) return helper.call("dynamodb", "DeleteItem", args) end

-- scan{region, TableName, FilterExpression?, ...} -> {Items = ...}: one page (a lock table is small)
function M.scan(args) return helper.call("dynamodb", "Scan", args) end

-- create_table{region, TableName, KeySchema, AttributeDefinitions, BillingMode?} -> response
function M.create_table(args) return helper.call("dynamodb", "CreateTable", args) end

-- describe_table{region, TableName} -> {Table = ...}
function M.describe_table(args) return helper.call("dynamodb", "DescribeTable", args) end

return M
