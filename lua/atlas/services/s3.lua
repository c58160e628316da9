-- S3 helpers: objects as strings. Arguments: region (+ profile, endpoint)
-- and S3's own parameters, as in boto3 (Bucket, Key, Body, IfMatch, ...).
-- A custom endpoint (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3) is addressed
-- path-style, AWS itself virtual-hosted, as the SDKs do (atlas.aws.real).
local helper = require "atlas.aws.helper"

local M = {}

-- get_object{region, Bucket, Key} -> {Body = the object as a string, ETag =, LastModified =, ...}
-- Raises NoSuchKey when it is absent.
function M.get_object(args) return helper.call("s3", "GetObject", args) end

-- put_object{region, Bucket, Key, Body, IfNoneMatch = "*"?, IfMatch = etag?} -> {ETag =, ...}
-- With IfNoneMatch = "*" the write fails (PreconditionFailed) when the key
-- exists; with IfMatch, when its ETag differs.
function M.put_object(args) return helper.call("s3", "PutObject", args) end

-- delete_object{region, Bucket, Key} -> response; deleting an absent key succeeds
function M.delete_object(args) return helper.call("s3", "DeleteObject", args) end

-- list_objects{region, Bucket, Prefix?} -> every object under Prefix (all pages):
-- {{Key =, LastModified =, ETag =, Size =}, ...}
function M.list_objects(args)
    return helper.paginate("s3", "ListObjectsV2", args, {
        input = "ContinuationToken",
        output = "NextContinuationToken",
        items = "Contents",
        more = "IsTruncated",
    })
end

-- create_bucket{region, Bucket} -> response. Outside us-east-1 S3 wants the
-- region as the bucket's location constraint; it is added here.
function M.create_bucket(args)
    local copy = {}
    for k, v in pairs(args) do
        copy[k] = v
    end
    if copy.region and copy.region ~= "us-east-1" and not copy.CreateBucketConfiguration then
        copy.CreateBucketConfiguration = { LocationConstraint = copy.region }
    end
    return helper.call("s3", "CreateBucket", copy)
end

-- head_bucket{region, Bucket} -> response; raises when it is absent or denied
function M.head_bucket(args) return helper.call("s3", "HeadBucket", args) end

return M
