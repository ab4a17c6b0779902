#!/usr/bin/env python3
"""An HTTP forward proxy that signs every request it passes on as DESIGN section 3 says, so an
API fuzzer (scripts/api-fuzz.sh runs schemathesis through it with --proxy) reaches the code
behind the signature check instead of meeting 401 every time.

Its key is made at start (a new entity that owns nothing); the audience of each request is the
entity the target's /.well-known/lcp names. GET and HEAD are signed as queries (no counter),
every other method as a command with a counter that only grows.

Usage: lcp-sign-proxy.py PORT_FILE   (listens on 127.0.0.1:0 and writes the port to PORT_FILE)
Needs: the `cryptography` package.
"""
import base64
import hashlib
import http.client
import http.server
import itertools
import json
import sys
import threading
import time
import urllib.parse

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY = Ed25519PrivateKey.generate()
ENTITY = "ed25519:" + KEY.public_key().public_bytes(
    serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
COUNTER = itertools.count(time.time_ns() // 1000)
COUNTER_LOCK = threading.Lock()
AUDIENCES = {}
# Longest the proxy waits for the target (long polls included).
TIMEOUT_S = 60


def audience(netloc):
    if netloc not in AUDIENCES:
        conn = http.client.HTTPConnection(netloc, timeout=10)
        try:
            conn.request("GET", "/.well-known/lcp")
            AUDIENCES[netloc] = json.loads(conn.getresponse().read()).get("entity", "")
        except (OSError, ValueError):
            AUDIENCES[netloc] = ""
        finally:
            conn.close()
    return AUDIENCES[netloc]


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_chunked(self):
        body = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return body
            body += self.rfile.read(size)
            self.rfile.readline()

    def forward(self):
        url = urllib.parse.urlsplit(self.path)
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = self.read_chunked()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        # The body goes on whole, with its length (it is hashed into the signature).
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("proxy-connection", "connection", "host",
                                        "transfer-encoding", "content-length")}
        method = self.command.upper()
        if method in ("GET", "HEAD"):
            counter = ""
        else:
            with COUNTER_LOCK:
                counter = str(next(COUNTER))
        now = str(time.time_ns() // 1_000_000)
        digest = hashlib.sha256(body).hexdigest()
        text = "\n".join(["LCP-REQUEST-1", audience(url.netloc), method, path, now, counter, digest])
        headers["LCP-Entity"] = ENTITY
        headers["LCP-Time"] = now
        headers["LCP-Signature"] = b64(KEY.sign(text.encode()))
        if counter:
            headers["LCP-Counter"] = counter
        if body:
            headers["LCP-Content-SHA256"] = digest
        conn = http.client.HTTPConnection(url.netloc, timeout=TIMEOUT_S)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(data)
        except OSError as e:
            msg = f"proxy: {e}".encode()
            self.send_response(502)
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
        finally:
            conn.close()

    def __getattr__(self, name):
        # Every method, the unusual ones a fuzzer tries included (TRACE, QUERY, ...), is
        # passed on: the service, not the proxy, must answer them.
        if name.startswith("do_"):
            return self.forward
        raise AttributeError(name)


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    with open(sys.argv[1], "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
