#!/usr/bin/env python3
"""Checks AWS responses against the output shapes of botocore's models.

  validate_shapes.py FILE     (FILE: JSON list of {"label", "service", "action", "response"})

Prints one JSON list of problems: members the model does not have, and values whose type does not
match the member's shape. atlas's contract (docs/aws.md) is checked, not boto3's Python types:
timestamps may be ISO strings (XML services) or epoch numbers (JSON services), blobs are strings,
and an empty Lua table may stand for an empty list or map.
"""
import json
import sys

import botocore.session

CLIENT_TO_MODEL = {"eventbridge": "events"}


def check(shape, value, path, problems):
    t = shape.type_name
    if t == "structure":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a structure, got {type(value).__name__}")
            return
        for key, v in value.items():
            member = shape.members.get(key)
            if member is None:
                problems.append(f"{path}.{key}: not a member of {shape.name}")
            else:
                check(member, v, f"{path}.{key}", problems)
    elif t == "list":
        if value == {}:
            return
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, v in enumerate(value):
            check(shape.member, v, f"{path}[{i}]", problems)
    elif t == "map":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a map, got {type(value).__name__}")
            return
        for k, v in value.items():
            check(shape.value, v, f"{path}[{k!r}]", problems)
    elif t in ("string", "blob"):
        if not isinstance(value, str):
            problems.append(f"{path}: {shape.name} is a {t}, got {type(value).__name__} {value!r}")
    elif t in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path}: {shape.name} is an {t}, got {type(value).__name__} {value!r}")
    elif t in ("float", "double"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            problems.append(f"{path}: {shape.name} is a {t}, got {type(value).__name__} {value!r}")
    elif t == "boolean":
        if not isinstance(value, bool):
            problems.append(f"{path}: {shape.name} is a boolean, got {type(value).__name__} {value!r}")
    elif t == "timestamp":
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            problems.append(f"{path}: {shape.name} is a timestamp, got {type(value).__name__} {value!r}")


def main():
    session = botocore.session.get_session()
    problems = []
    with open(sys.argv[1]) as f:
        entries = json.load(f)
    for e in entries:
        model = session.get_service_model(CLIENT_TO_MODEL.get(e["service"], e["service"]))
        output = model.operation_model(e["action"]).output_shape
        if output is None:
            continue
        found = []
        check(output, e["response"], "", found)
        problems.extend(f"{e['label']} {e['service']} {e['action']}{p}" for p in found)
    print(json.dumps(problems, indent=1))


if __name__ == "__main__":
    main()
