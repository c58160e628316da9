-- atlas.state.s3: the run state of a team, in an S3 prefix, with run locks
-- in a DynamoDB table. Same functions and failures as atlas.state.local.
--
-- Objects: s3://BUCKET/PREFIX/<key>. A version is the object's ETag; a
-- conditional write sends If-None-Match: * or If-Match: <etag>, which S3
-- (and moto) refuse with 412 PreconditionFailed when the condition fails.
--
-- Run locks: one item per lock in a table whose string hash key is LockID
-- (as Terraform's, so a team can reuse its lock table). LockID is
-- BUCKET/PREFIX/<name>.lock, like the local lock file's path. The holder
-- takes it with a conditional PutItem and renews a lease while it runs
-- (runtime.keep_alive: before each outside call and during sleeps). A
-- lease that ran out (its machine died) is taken over with a warning.
local sys = require "atlas.sys"
local errors = require "atlas.errors"
local log = require "atlas.run.log"
local runtime = require "atlas.run.runtime"
local s3 = require "atlas.services.s3"
local dynamodb = require "atlas.services.dynamodb"

local M = {}

-- Seconds a lock stays held without renewal; ATLAS_LOCK_LEASE overrides it
-- (the tests use a short one). The holder renews after a third of it.
M.DEFAULT_LEASE = 120

local Store = {}
Store.__index = Store

local function usage(fmt, ...) errors.raise { kind = "usage", message = string.format(fmt, ...) } end

-- s3.parse("s3://bucket/some/prefix") -> bucket, prefix ("" for none)
function M.parse(url)
    local bucket, prefix = url:match("^s3://([^/]+)/?(.*)$")
    if not bucket or not bucket:match("^[a-z0-9][a-z0-9.-]+[a-z0-9]$") then
        usage("--state %s: expected s3://BUCKET/PREFIX with a valid bucket name", url)
    end
    return bucket, (prefix:gsub("/+$", ""))
end

local function env(name)
    local v = os.getenv(name)
    if v == "" then return nil end
    return v
end

-- s3.new(url, {lock_table=, region=, lease=}) -> store. The lock table comes
-- from ATLAS_LOCK_TABLE unless given: shared state without a shared lock
-- would let two machines run one failover at once, so it is required.
function M.new(url, options)
    options = options or {}
    local bucket, prefix = M.parse(url)
    local table_name = options.lock_table or env("ATLAS_LOCK_TABLE")
    if not table_name then
        usage("--state %s needs a DynamoDB lock table: --lock-table NAME or ATLAS_LOCK_TABLE", url)
    end
    local lease = options.lease or tonumber(env("ATLAS_LOCK_LEASE") or "") or M.DEFAULT_LEASE
    if lease <= 0 then usage("ATLAS_LOCK_LEASE must be a positive number of seconds") end
    return setmetatable({
        kind = "s3",
        bucket = bucket,
        prefix = prefix,
        lock_table = table_name,
        region = options.region
            or env("ATLAS_STATE_REGION")
            or env("AWS_REGION")
            or env("AWS_DEFAULT_REGION")
            or "us-east-1",
        lease = lease,
    }, Store)
end

function Store:object_key(key)
    if self.prefix == "" then return key end
    return self.prefix .. "/" .. key
end

function Store:where(key)
    local base = "s3://" .. self.bucket .. (self.prefix ~= "" and ("/" .. self.prefix) or "")
    if key then return base .. "/" .. key end
    return base
end

-- Runs one helper call: response, or nil and the error object. Only what
-- AWS or the endpoint answered is a failure of the store; a lost lock or a
-- bug goes on up. A Ctrl-C that cuts a request short does not lose it: the
-- request is made again (a request started after the signal runs to its
-- end), and then the interrupt goes on up, as it would after a local write.
local function attempt(fn, args)
    args.own_state = true
    local ok, resp = pcall(fn, args)
    if not ok and errors.is(resp, "interrupted") then
        local interrupt = resp
        ok, resp = pcall(fn, args)
        if ok or errors.is(resp, "aws") or errors.is(resp, "usage") then error(interrupt, 0) end
    end
    if ok then return resp end
    if errors.is(resp, "aws") or errors.is(resp, "usage") then return nil, resp end
    error(resp, 0)
end

local function lock_failure(self, err)
    return nil, "DynamoDB table " .. self.lock_table .. " (" .. self.region .. "): " .. errors.message(err), err.code
end

local function failure(where, err) return nil, where .. ": " .. errors.message(err), err.code end

-- store:get(key) -> text, version | nil, message, code
function Store:get(key)
    local resp, err = attempt(s3.get_object, { region = self.region, Bucket = self.bucket, Key = self:object_key(key) })
    if not resp then
        if err.code == "NoSuchKey" then return nil, self:where(key) .. ": no such object", "NotFound" end
        return failure(self:where(key), err)
    end
    return resp.Body or "", resp.ETag
end

-- store:put(key, text, {if_absent=, if_version=}) -> version | nil, message, code
function Store:put(key, text, options)
    options = options or {}
    local args = { region = self.region, Bucket = self.bucket, Key = self:object_key(key), Body = text }
    if options.if_absent then args.IfNoneMatch = "*" end
    if options.if_version then args.IfMatch = options.if_version end
    local resp, err = attempt(s3.put_object, args)
    if not resp then
        -- 409 ConditionalRequestConflict: a concurrent conditional write won;
        -- NoSuchKey under If-Match: the version we expected is gone.
        if
            err.code == "PreconditionFailed"
            or err.code == "ConditionalRequestConflict"
            or (options.if_version and err.code == "NoSuchKey")
        then
            return nil, self:where(key) .. ": changed by another process since it was read", "PreconditionFailed"
        end
        return failure(self:where(key), err)
    end
    return resp.ETag
end

-- store:list(prefix) -> {{key=, modified=}, ...} sorted by key | nil, message, code
function Store:list(prefix)
    local base = self:object_key("")
    local items, err =
        attempt(s3.list_objects, { region = self.region, Bucket = self.bucket, Prefix = base .. (prefix or "") })
    if not items then return failure(self:where(prefix), err) end
    local protocol = require "atlas.aws.protocol"
    local out = {}
    for _, item in ipairs(items) do
        out[#out + 1] = {
            key = item.Key:sub(#base + 1),
            modified = type(item.LastModified) == "string" and protocol.parse_time(item.LastModified)
                or item.LastModified,
        }
    end
    table.sort(out, function(a, b) return a.key < b.key end)
    return out
end

-- store:delete(key) -> true | nil, message, code
function Store:delete(key)
    local resp, err =
        attempt(s3.delete_object, { region = self.region, Bucket = self.bucket, Key = self:object_key(key) })
    if not resp then return failure(self:where(key), err) end
    return true
end

-- store:check() -> true | nil, message, code: the bucket and the lock table
-- answer, so that a run does not start against a store it cannot write.
function Store:check()
    local resp, err = attempt(s3.head_bucket, { region = self.region, Bucket = self.bucket })
    if not resp then
        -- HEAD has no body: the status is all S3 says
        local why = ({ ["404"] = "no such bucket", ["403"] = "access denied" })[tostring(err.code)]
        return nil,
            self:where() .. ": " .. (why and (why .. " (" .. errors.message(err) .. ")") or errors.message(err)),
            err.code
    end
    resp, err = attempt(dynamodb.describe_table, { region = self.region, TableName = self.lock_table })
    if not resp then return lock_failure(self, err) end
    local key = resp.Table and resp.Table.KeySchema and resp.Table.KeySchema[1]
    if not key or key.AttributeName ~= "LockID" then
        return nil,
            string.format(
                "DynamoDB table %s: its hash key must be LockID (a string), as Terraform's lock table",
                self.lock_table
            ),
            "BadLockTable"
    end
    return true
end

-- ---- the run lock -------------------------------------------------------------

local function iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) end

-- The holder as a person reads it: "alice@host-a, pid 4242, run R, since T, lease until U".
local function describe(holder)
    local parts = { (holder.Holder or holder.Who or "?") }
    if holder.Pid then parts[#parts + 1] = "pid " .. math.floor(holder.Pid) end
    if holder.RunID and holder.RunID ~= "" then parts[#parts + 1] = "run " .. holder.RunID end
    if holder.Started then parts[#parts + 1] = "since " .. holder.Started end
    if holder.Expires then parts[#parts + 1] = "lease until " .. iso(holder.Expires) end
    return table.concat(parts, ", ")
end
M.describe_holder = describe

function Store:lock_id(name) return self.bucket .. "/" .. self:object_key(name .. ".lock") end

local function token()
    return require("atlas.sigv4")
        .sha256_hex(string.format("%s %d %.6f %.17g", sys.hostname() or "?", sys.getpid(), sys.time(), math.random()))
        :sub(1, 32)
end

local function item_key(id) return { LockID = { S = id } } end

-- Reads the current holder: plain table, or nil when nobody holds it; or
-- false, message, code when the table cannot be read.
function Store:read_lock(id)
    local resp, err = attempt(
        dynamodb.get_item,
        { region = self.region, TableName = self.lock_table, Key = item_key(id), ConsistentRead = true }
    )
    if not resp then return false, "DynamoDB table " .. self.lock_table .. ": " .. errors.message(err), err.code end
    return dynamodb.unmarshal(resp.Item)
end

local Lock = {}
Lock.__index = Lock

-- Writes our item if cond holds: true, or false when it does not, or nil, err.
function Store:put_lock(item, condition, values)
    local resp, err = attempt(dynamodb.put_item, {
        region = self.region,
        TableName = self.lock_table,
        Item = dynamodb.marshal(item),
        ConditionExpression = condition,
        ExpressionAttributeValues = values,
    })
    if resp then return true end
    if err.code == "ConditionalCheckFailedException" then return false end
    return nil, err
end

-- store:lock(name, {run_id=}) -> lock | nil, holder, "LockHeld" | nil, message, code
function Store:lock(name, info)
    local id = self:lock_id(name)
    local now = sys.time()
    local user, host = require("atlas.state").whoami()
    local mine = {
        LockID = id,
        Token = token(),
        Holder = user .. "@" .. host,
        Host = host,
        Pid = sys.getpid(),
        RunID = info and info.run_id or "",
        Started = iso(now),
        Expires = math.floor(now + self.lease + 0.5),
        Lease = self.lease,
        Location = self:where(),
    }
    for _ = 1, 3 do
        local taken, err = self:put_lock(mine, "attribute_not_exists(LockID)")
        if taken then return self:held(mine) end
        if taken == nil then return lock_failure(self, err) end
        local holder, read_err, code = self:read_lock(id)
        if holder == false then return nil, read_err, code end
        if holder then
            if not holder.Expires or holder.Expires > sys.time() then return nil, describe(holder), "LockHeld" end
            log.warn(
                "run lock %s: the lease of %s ran out %d s ago without renewal (its process or machine stopped); taking the lock over",
                name,
                describe(holder),
                math.floor(sys.time() - holder.Expires)
            )
            -- Only the item we just read may be replaced: if another machine
            -- took it over first, we find it held on the next round.
            local condition, values
            if holder.Token then
                condition, values = "#t = :t", { [":t"] = { S = holder.Token } }
            else
                condition, values = "#e = :e", { [":e"] = { N = string.format("%d", holder.Expires) } }
            end
            local ok, put_err = attempt(dynamodb.put_item, {
                region = self.region,
                TableName = self.lock_table,
                Item = dynamodb.marshal(mine),
                ConditionExpression = condition,
                ExpressionAttributeNames = holder.Token and { ["#t"] = "Token" } or { ["#e"] = "Expires" },
                ExpressionAttributeValues = values,
            })
            if ok then return self:held(mine) end
            if put_err.code ~= "ConditionalCheckFailedException" then return lock_failure(self, put_err) end
        end
        -- Released or taken over between our two calls: look again.
    end
    local holder = self:read_lock(id)
    return nil, holder and describe(holder) or "another run", "LockHeld"
end

function Store:held(item)
    local lock = setmetatable({
        store = self,
        item = item,
        expires = item.Expires,
        renew_at = sys.time() + self.lease / 3,
    }, Lock)
    lock.keeper = function() lock:renew() end
    runtime.keep_alive(lock.keeper, math.max(self.lease / 3, 0.1))
    return lock
end

local function lost(lock, why)
    lock.lost = why
    errors.raise {
        kind = "state",
        code = "LockLost",
        message = string.format(
            "lost the run lock %s: %s; stopping so that two runs do not act at once",
            lock.item.LockID,
            why
        ),
    }
end

-- lock:renew() -> nothing; extends the lease when a third of it has passed.
-- Raises a "state" LockLost error once another run has taken the lock (or an
-- operator released it), and on every later call: this run must stop.
function Lock:renew()
    if self.released then return end
    if self.lost then lost(self, self.lost) end
    local now = sys.time()
    if now < self.renew_at then return end
    local store = self.store
    local expires = math.floor(now + store.lease + 0.5)
    -- The renewal is itself an outside call, which ticks: not due again inside it.
    self.renew_at = math.huge
    local resp, err = attempt(dynamodb.update_item, {
        region = store.region,
        TableName = store.lock_table,
        Key = item_key(self.item.LockID),
        UpdateExpression = "SET #e = :e",
        ConditionExpression = "#t = :t",
        ExpressionAttributeNames = { ["#t"] = "Token", ["#e"] = "Expires" },
        ExpressionAttributeValues = { [":e"] = { N = string.format("%d", expires) }, [":t"] = { S = self.item.Token } },
    })
    if resp then
        self.expires, self.renew_at = expires, now + store.lease / 3
        return
    end
    if err.code == "ConditionalCheckFailedException" then
        local holder = store:read_lock(self.item.LockID)
        lost(self, holder and ("it is now held by " .. describe(holder)) or "it was released (atlas-run unlock?)")
    end
    if now >= self.expires then lost(self, "the lease ran out and cannot be renewed: " .. errors.message(err)) end
    -- Try again soon; the lease still has time.
    log.warn("run lock: cannot renew the lease (%s); retrying", errors.message(err))
    self.renew_at = now + math.min(5, store.lease / 10)
end

-- lock:release() -> nothing; safe to call twice. Deletes the item only while
-- it is still ours.
function Lock:release()
    if self.released then return end
    self.released = true
    runtime.keep_alive(self.keeper, nil)
    if self.lost then return end
    local store = self.store
    -- A Ctrl-C during the release is the run's end anyway: the request was
    -- made again to its end (attempt), and nothing is left to stop.
    local completed, resp, err = pcall(attempt, dynamodb.delete_item, {
        region = store.region,
        TableName = store.lock_table,
        Key = item_key(self.item.LockID),
        ConditionExpression = "#t = :t",
        ExpressionAttributeNames = { ["#t"] = "Token" },
        ExpressionAttributeValues = { [":t"] = { S = self.item.Token } },
    })
    if not completed then
        if errors.is(resp, "interrupted") then return end
        error(resp, 0)
    end
    if not resp and err.code ~= "ConditionalCheckFailedException" then
        log.warn(
            "run lock %s: cannot release it (%s); it frees itself at %s, or `atlas-run unlock %s`",
            self.item.LockID,
            errors.message(err),
            iso(self.expires),
            self.item.RunID ~= "" and self.item.RunID or "RUN"
        )
    end
end
-- store:find_lock(run_or_name) -> {name=, holder=text, live=bool, item=} | nil (none) | nil, message, code
-- By lock name first, else the lock whose holder runs that run id.
function Store:find_lock(what)
    local holder, err, code = self:read_lock(self:lock_id(what))
    if holder == false then return nil, err, code end
    if not holder then
        local base = self.bucket .. "/" .. self:object_key("")
        local resp, scan_err = attempt(dynamodb.scan, {
            region = self.region,
            TableName = self.lock_table,
            FilterExpression = "RunID = :r AND begins_with(LockID, :p)",
            ExpressionAttributeValues = { [":r"] = { S = what }, [":p"] = { S = base } },
        })
        if not resp then return lock_failure(self, scan_err) end
        holder = resp.Items and resp.Items[1] and dynamodb.unmarshal(resp.Items[1])
    end
    if not holder then return nil end
    return {
        name = holder.LockID:match("([^/]+)%.lock$") or holder.LockID,
        holder = describe(holder),
        live = holder.Expires == nil or holder.Expires > sys.time(),
        item = holder,
    }
end

-- store:unlock(found) -> true | nil, message, code. Deletes the lock item
-- found by find_lock, only if nobody took it since. Its holder, if still
-- running, stops at its next renewal (LockLost).
function Store:unlock(found)
    local item = found.item
    local resp, err = attempt(dynamodb.delete_item, {
        region = self.region,
        TableName = self.lock_table,
        Key = item_key(item.LockID),
        ConditionExpression = item.Token and "#t = :t" or "attribute_exists(LockID)",
        ExpressionAttributeNames = item.Token and { ["#t"] = "Token" } or nil,
        ExpressionAttributeValues = item.Token and { [":t"] = { S = item.Token } } or nil,
    })
    if resp then return true end
    if err.code == "ConditionalCheckFailedException" then
        return nil, "the lock changed hands while it was being released; look again", "PreconditionFailed"
    end
    return lock_failure(self, err)
end

Lock.close = Lock.release
Lock.__close = Lock.release

return M
