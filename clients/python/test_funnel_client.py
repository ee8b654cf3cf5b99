"""The client's replica handling against fake replicas (standard library only):

    python3 -m unittest clients/python/test_funnel_client.py

Each fake replica is a threaded HTTP server that answers the model list and recommend
calls after a delay it is told, and records which requests it finished writing and which
found their client gone (a cancelled hedge).
"""
import json
import os
import socket
import sys
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from funnel_client import Funnel, FunnelError, Hedge  # noqa: E402


class FakeReplica:
    def __init__(self, name):
        self.name, self.delay, self.status = name, 0.0, 200
        self.served, self.abandoned, self.writes = 0, 0, 0
        self.lock = threading.Lock()
        replica = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def answer(self, body):
                time.sleep(replica.delay)
                data = json.dumps(body).encode()
                try:
                    self.send_response(replica.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                    # The client closed its socket while this request slept: a later write
                    # or read sees the reset. Probe with a zero-timeout peek.
                    self.connection.settimeout(0.05)
                    try:
                        if self.connection.recv(1, socket.MSG_PEEK) == b"":
                            raise ConnectionResetError
                    except socket.timeout:
                        pass
                    finally:
                        self.connection.settimeout(None)
                    with replica.lock:
                        replica.served += 1
                except (BrokenPipeError, ConnectionResetError):
                    with replica.lock:
                        replica.abandoned += 1
                    self.close_connection = True

            def do_GET(self):
                if self.path == "/v1/models":
                    self.answer({"models": [{"name": "shop"}]})
                else:
                    self.answer({"items": [{"item": replica.name}]})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                self.rfile.read(length)
                if self.path.endswith("/interactions"):
                    with replica.lock:
                        replica.writes += 1
                self.answer({"items": [{"item": replica.name}], "accepted": 1})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ReplicaTests(unittest.TestCase):
    def setUp(self):
        self.replicas = [FakeReplica("a"), FakeReplica("b")]

    def tearDown(self):
        for r in self.replicas:
            r.stop()

    def warm(self, client, reads):
        for i in range(reads):
            client.recommend(f"u{i}")

    def test_a_slow_read_is_answered_by_the_hedge_and_the_slow_copy_cancelled(self):
        a, b = self.replicas
        f = Funnel([a.url, b.url], model="shop", hedge=Hedge(min_samples=20, budget=1.0))
        self.addCleanup(f.close)
        self.warm(f, 40)  # p95 of fast answers: a few milliseconds
        a.delay = 2.0
        for i in range(6):  # every other read starts on the slow replica
            t0 = time.perf_counter()
            answer = f.recommend(f"u{i}")
            elapsed = time.perf_counter() - t0
            self.assertEqual(answer["items"][0]["item"], "b")
            self.assertLess(elapsed, 1.0, "the hedge did not answer before the slow replica")
        self.assertGreaterEqual(f.stats["hedges_won"], 3)
        time.sleep(2.5)  # the slow copies wake and find their connections closed
        self.assertGreaterEqual(a.abandoned, 3, "the losing copies were not cancelled")

    def test_no_hedge_before_the_latency_is_known_nor_past_the_budget(self):
        a, b = self.replicas
        f = Funnel([a.url, b.url], model="shop", hedge=Hedge(min_samples=10, budget=0.1))
        self.addCleanup(f.close)
        a.delay = b.delay = 0.02
        f.recommend("u0")
        self.assertEqual(f.stats["hedges"], 0)  # nothing known yet: no hedge
        for i in range(60):
            f.recommend(f"u{i}")
        # Every replica is slow the same way: the p95 still hedges the slowest 5%, but never
        # more than the budget's tenth of the reads plus the bucket's first 10 tokens.
        self.assertLessEqual(f.stats["hedges"], 0.1 * f.stats["reads"] + 10)

    def test_a_replica_that_refuses_connections_is_skipped_for_reads_and_writes(self):
        a, _ = self.replicas
        dead = f"http://127.0.0.1:{free_port()}"
        f = Funnel([dead, a.url], model="shop")
        self.addCleanup(f.close)
        for i in range(4):
            self.assertEqual(f.recommend(f"u{i}")["items"][0]["item"], "a")
            f.interactions([{"user": "u1", "item": "i1"}])
        self.assertEqual(a.writes, 4)
        self.assertGreaterEqual(f.stats["failovers"], 4)

    def test_writes_are_never_hedged(self):
        a, b = self.replicas
        f = Funnel([a.url, b.url], model="shop", hedge=Hedge(min_samples=5, budget=1.0))
        self.addCleanup(f.close)
        self.warm(f, 20)
        a.delay = b.delay = 0.3
        before = f.stats["hedges"]
        f.interactions([{"user": "u1", "item": "i1"}])
        f.interactions([{"user": "u1", "item": "i1"}])
        self.assertEqual(f.stats["hedges"], before)
        self.assertEqual(a.writes + b.writes, 2)

    def test_every_replica_down_is_an_error_naming_one(self):
        f = Funnel(self.replicas[0].url, model="shop")
        self.addCleanup(f.close)
        for r in self.replicas:
            r.stop()
        self.replicas = []
        with self.assertRaises(FunnelError) as e:
            f.recommend("u1")
        self.assertEqual(e.exception.code, "unreachable")


if __name__ == "__main__":
    unittest.main()
