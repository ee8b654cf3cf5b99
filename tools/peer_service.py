#!/usr/bin/env python3
"""The funnel of tools/peer_pipeline.py (hnswlib -> LightGBM -> numpy MMR, the same data
as Funnel's bundle) served over HTTP the way a Python team would run it on this machine:
the standard library's HTTP server, one process per core sharing the port (SO_REUSEPORT),
numpy and LightGBM on one thread each.

    python tools/peer_service.py EXPORT_DIR --port 18181 [--processes 2]
    GET /recommend?user=ID&k=20  ->  {"items": [...]}
"""
import argparse
import json
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from urllib.parse import parse_qs, urlparse

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def server_bind(self):
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def serve(directory, port):
    from peer_pipeline import build
    retrieve, rank, rerank, data = build(directory, cache=True)
    users = open(f"{directory}/request_users.txt").read().split()
    row = {u: i for i, u in enumerate(users)}
    queries, histories = data["queries"], data["histories"]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urlparse(self.path)
            if url.path == "/health":
                return self.answer(200, {"status": "ok"})
            if url.path != "/recommend":
                return self.answer(404, {"error": "no route"})
            q = parse_qs(url.query)
            user = q.get("user", [""])[0]
            if user not in row:
                return self.answer(404, {"error": f"unknown user {user}"})
            try:
                k = int(q.get("k", ["20"])[0])
            except ValueError:
                return self.answer(400, {"error": "bad k"})
            r = row[user]
            ids, sims = retrieve(queries[r:r + 1], histories[r])
            ids, scores = rank(ids, sims, histories[r])
            out = rerank(ids, scores)[:k]
            self.answer(200, {"items": [int(i) for i in out]})

    Server(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--port", type=int, default=18181)
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    # The index and the model are built and saved once, in a process of their own (LightGBM's
    # and BLAS's thread pools do not survive a fork), before the serving processes load them.
    pid = os.fork()
    if pid == 0:
        from peer_pipeline import build
        build(a.dir, cache=True)
        os._exit(0)
    os.waitpid(pid, 0)
    children = []
    for _ in range(a.processes - 1):
        pid = os.fork()
        if pid == 0:
            serve(a.dir, a.port)
            os._exit(0)
        children.append(pid)
    serve(a.dir, a.port)
