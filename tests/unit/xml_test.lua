-- atlas.xml: the element-tree shape the AWS layer decodes responses from.
local t = require "atlas.test"
local xml = require "atlas.xml"

-- Shapes of real AWS responses, reduced. Each case: input document, expected tree.
local shapes = {
    {
        name = "namespaces are dropped, one-member lists stay children, leaf text exact",
        input = [[<?xml version="1.0" encoding="UTF-8"?>
<DescribeDBInstancesResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/">
  <DescribeDBInstancesResult>
    <DBInstances>
      <DBInstance>
        <DBInstanceIdentifier>atlas-production-db-eu-west-1</DBInstanceIdentifier>
        <MultiAZ>true</MultiAZ>
      </DBInstance>
    </DBInstances>
  </DescribeDBInstancesResult>
  <ResponseMetadata><RequestId>abc-123</RequestId></ResponseMetadata>
</DescribeDBInstancesResponse>]],
        tree = {
            tag = "DescribeDBInstancesResponse",
            attr = {},
            {
                tag = "DescribeDBInstancesResult",
                attr = {},
                {
                    tag = "DBInstances",
                    attr = {},
                    {
                        tag = "DBInstance",
                        attr = {},
                        { tag = "DBInstanceIdentifier", attr = {}, text = "atlas-production-db-eu-west-1" },
                        { tag = "MultiAZ", attr = {}, text = "true" },
                    },
                },
            },
            { tag = "ResponseMetadata", attr = {}, { tag = "RequestId", attr = {}, text = "abc-123" } },
        },
    },
    {
        name = "prefixed namespaces and prefixed attributes lose their prefix",
        input = [[<r:ChangeInfo xmlns:r="https://route53.amazonaws.com/doc/2013-04-01/" xmlns:x="urn:x" x:kind="a" plain="b"><r:Id>/change/C1</r:Id><r:Status>PENDING</r:Status></r:ChangeInfo>]],
        tree = {
            tag = "ChangeInfo",
            attr = { kind = "a", plain = "b" },
            { tag = "Id", attr = {}, text = "/change/C1" },
            { tag = "Status", attr = {}, text = "PENDING" },
        },
    },
    {
        name = "empty and whitespace-only elements have no text; empty list has no children",
        input = "<A><Marker/><Next></Next><List>\n   \n</List></A>",
        tree = {
            tag = "A",
            attr = {},
            { tag = "Marker", attr = {} },
            { tag = "Next", attr = {} },
            { tag = "List", attr = {} },
        },
    },
    {
        name = "entities, CDATA and character references decode; leaf spaces kept",
        input = "<V> a &amp; b &lt;c&gt; <![CDATA[<raw>]]> &#x263A; </V>",
        tree = { tag = "V", attr = {}, text = " a & b <c> <raw> \u{263A} " },
    },
    {
        name = "mixed content: text concatenated around children, then trimmed",
        input = "<Message>\n  Service <b>x</b> not found\n</Message>",
        tree = { tag = "Message", attr = {}, text = "Service  not found", { tag = "b", attr = {}, text = "x" } },
    },
    {
        name = "repeated members keep document order",
        input = "<ResourceRecords><ResourceRecord><Value>1</Value></ResourceRecord>"
            .. "<ResourceRecord><Value>2</Value></ResourceRecord>"
            .. "<ResourceRecord><Value>3</Value></ResourceRecord></ResourceRecords>",
        tree = {
            tag = "ResourceRecords",
            attr = {},
            { tag = "ResourceRecord", attr = {}, { tag = "Value", attr = {}, text = "1" } },
            { tag = "ResourceRecord", attr = {}, { tag = "Value", attr = {}, text = "2" } },
            { tag = "ResourceRecord", attr = {}, { tag = "Value", attr = {}, text = "3" } },
        },
    },
}

for _, c in ipairs(shapes) do
    t.case("parse: " .. c.name, function()
        local tree, err = xml.parse(c.input)
        t.eq(err, nil, "error")
        t.eq(tree, c.tree)
    end)
end

-- Malformed input: nil plus "line L column C: message" pointing at the fault.
local malformed = {
    { input = "", err = "^line 1 column 1: no element found$" },
    { input = "<a>\n  <b></a>", err = "^line 2 column 8: mismatched tag$" },
    { input = "<a>text", err = "^line 1 column 8: no element found$" },
    { input = "<a/><b/>", err = "^line 1 column 5: junk after document element$" },
    { input = "<a x='1' x='2'/>", err = "^line 1 column 10: duplicate attribute$" },
    { input = "<a>&nope;</a>", err = "^line 1 column 4: undefined entity$" },
    { input = "<a>\xff\xfe</a>", err = "^line 1 column 4: not well%-formed" },
    { input = "<!DOCTYPE a [<!ENTITY e 'x'>]><a>&e;</a>", err = "^line 1 column %d+: DOCTYPE is not allowed$" },
    { input = "not xml at all", err = "^line 1 column 1: syntax error$" },
}

for _, c in ipairs(malformed) do
    t.case("malformed: " .. c.err, function()
        local tree, err = xml.parse(c.input)
        t.eq(tree, nil, "tree")
        t.match(err, c.err)
    end)
end

t.case("depth bomb is refused with a position, and the limit is exactly 200", function()
    local tree, err = xml.parse(string.rep("<a>", 100000))
    t.eq(tree, nil)
    t.match(err, "^line 1 column %d+: elements nested too deeply")
    local ok = xml.parse(string.rep("<a>", 200) .. string.rep("</a>", 200))
    t.ok(ok, "200 levels must parse")
    t.eq(
        select(2, xml.parse(string.rep("<a>", 201) .. string.rep("</a>", 201))),
        "line 1 column 601: elements nested too deeply (limit 200)"
    )
end)

t.case("elements without attributes share one read-only empty attr table", function()
    local tree = xml.parse("<a><b/><c k='v'/></a>")
    t.eq(next(tree.attr), nil)
    t.ok(rawequal(tree.attr, tree[1].attr), "shared")
    t.raises(function() tree.attr.x = 1 end, "read%-only")
    tree[2].attr.extra = "ok" -- an element's own attr table stays writable
    t.eq(tree[2].attr, { k = "v", extra = "ok" })
end)

t.case("large text survives whole, and the next document parses normally", function()
    local big = string.rep("0123456789", 300000)
    t.eq(#xml.parse("<SecretString>" .. big .. "</SecretString>").text, #big)
    t.eq(xml.parse("<a><b>1</b></a>")[1].text, "1")
end)

t.case("the parser is reusable after errors", function()
    for _ = 1, 3 do
        t.eq(select(2, xml.parse("<a><b></a>")), "line 1 column 9: mismatched tag")
        t.eq(xml.parse("<ok>1</ok>"), { tag = "ok", attr = {}, text = "1" })
    end
end)

t.case("random bytes never crash the parser", function()
    math.randomseed(42)
    local alphabet = "<>/=\"'&;![]-?ab \n\0\xff"
    for _ = 1, 2000 do
        local n = math.random(0, 40)
        local bytes = {}
        for i = 1, n do
            local k = math.random(#alphabet)
            bytes[i] = alphabet:sub(k, k)
        end
        local tree, err = xml.parse("<r>" .. table.concat(bytes) .. "</r>")
        t.ok((tree ~= nil) ~= (err ~= nil), "exactly one of tree or error")
    end
end)

t.case("escape: text and attribute values round-trip", function()
    local raw = [[a & b < c > d "q" 'a' tab	line
end]]
    local escaped = xml.escape(raw)
    t.eq(escaped, "a &amp; b &lt; c &gt; d &quot;q&quot; &apos;a&apos; tab&#9;line&#10;end")
    t.eq(xml.parse("<v>" .. escaped .. "</v>").text, raw)
    t.eq(xml.parse('<v a="' .. escaped .. '"/>').attr.a, raw)
    t.eq(xml.escape("plain"), "plain")
    t.raises(function() xml.escape("bell\7") end, "not allowed")
end)

t.case("escape: carriage returns become references; UTF-8 and DEL pass; NUL and other controls raise", function()
    t.eq(xml.escape("a\r\nb"), "a&#13;&#10;b")
    t.eq(xml.escape("é€\127~"), "é€\127~")
    t.eq(xml.escape(""), "")
    t.raises(function() xml.escape("a\0b") end, "control character 0")
    t.raises(function() xml.escape("\31") end, "control character 31")
end)
