#!/usr/bin/env python3
"""Signs requests with botocore's SigV4Auth, for tests/unit/sigv4_botocore_test.lua.

usage: botocore_sigv4.py CASES.json

CASES.json is a list of {method, url, headers, body, region, service, time, credentials}
(the same table atlas.sigv4.sign takes). Prints a JSON list of
{canonical_request, string_to_sign, signature, authorization}, one per case.
"""
import datetime
import json
import sys

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def sign(case):
    creds = case["credentials"]
    credentials = Credentials(creds["access_key_id"], creds["secret_access_key"], creds.get("session_token"))
    request = AWSRequest(method=case["method"], url=case["url"], headers=dict(case.get("headers") or {}),
                         data=case.get("body", "").encode("utf-8"))
    stamp = datetime.datetime.fromtimestamp(case["time"], datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    request.context["timestamp"] = stamp
    auth = SigV4Auth(credentials, case["service"], case["region"])
    # add_auth computes the same pieces; call them one by one to report each
    request.headers["X-Amz-Date"] = stamp
    if credentials.token:
        request.headers["X-Amz-Security-Token"] = credentials.token
    canonical = auth.canonical_request(request)
    string_to_sign = auth.string_to_sign(request, canonical)
    signature = auth.signature(string_to_sign, request)
    auth._inject_signature_to_request(request, signature)
    return {
        "canonical_request": canonical,
        "string_to_sign": string_to_sign,
        "signature": signature,
        "authorization": request.headers["Authorization"],
    }


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)
    json.dump([sign(c) for c in cases], sys.stdout)


if __name__ == "__main__":
    main()
