#!/usr/bin/env python3
"""A loopback stand-in for the ECS container credentials endpoint and EC2 IMDSv2.

  fake_metadata.py PORT

IMDSv2: PUT /latest/api/token (needs X-aws-ec2-metadata-token-ttl-seconds) returns a token;
credential paths answer 401 without it. Container: GET /creds needs Authorization: secret-auth.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "imds-token-1"
CREDS = {"AccessKeyId": "ASIAIMDS", "SecretAccessKey": "imds-secret", "Token": "imds-session",
         "Expiration": "2099-01-01T00:00:00Z"}
CONTAINER = {"AccessKeyId": "ASIAECS", "SecretAccessKey": "ecs-secret", "Token": "ecs-session",
             "Expiration": "2099-01-01T00:00:00Z"}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self.reply(200, TOKEN)
        return self.reply(400, "bad token request")

    def do_GET(self):
        if self.path == "/creds":
            if self.headers.get("Authorization") != "secret-auth":
                return self.reply(403, "forbidden")
            return self.reply(200, json.dumps(CONTAINER))
        if self.path.startswith("/latest/meta-data/"):
            if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                return self.reply(401, "IMDSv2 token required")
            if self.path == "/latest/meta-data/iam/security-credentials/":
                return self.reply(200, "atlas-ops-role\n")
            if self.path == "/latest/meta-data/iam/security-credentials/atlas-ops-role":
                return self.reply(200, json.dumps(CREDS))
        return self.reply(404, "not found")


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
