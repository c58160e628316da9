#!/usr/bin/env python3
"""A loopback stand-in for the IAM Identity Center portal's GetRoleCredentials.

  sso_portal.py PORT TOKEN

GET /federation/credentials?account_id=A&role_name=R with header
x-amz-sso_bearer_token: TOKEN answers role credentials named after A and R;
any other token gets 401 UnauthorizedException, as the portal does. Each
request is counted (GET /__count), so a test can see credentials were cached.
"""
import json
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = sys.argv[2]
COUNT = [0]


class Portal(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/__count":
            return self.answer(200, {"count": COUNT[0]})
        if url.path != "/federation/credentials":
            return self.answer(404, {"message": "not found"})
        COUNT[0] += 1
        if self.headers.get("x-amz-sso_bearer_token") != TOKEN:
            return self.answer(401, {"message": "Session token not found or invalid"})
        q = urllib.parse.parse_qs(url.query)
        account, role = q["account_id"][0], q["role_name"][0]
        self.answer(200, {"roleCredentials": {
            "accessKeyId": "ASIASSO" + account[-4:],
            "secretAccessKey": "sso-secret-for-" + role,
            "sessionToken": "sso-session-token",
            "expiration": int((time.time() + 3600) * 1000),
        }})


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Portal).serve_forever()
