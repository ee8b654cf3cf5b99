#!/usr/bin/env python3
"""Plays a hostile client against a live `funnel serve` and checks it keeps answering.

Phases (same server, same valid load):
  quiet   CLIENTS keep-alive clients send valid recommend requests for SECONDS;
  attack  the same, while one thread keeps SLOW slowloris connections (a header line
          every second, reopened when the server closes them) and HELD connections that
          send nothing (reopened when closed), and another sends oversized heads and
          bodies, malformed request lines, bad chunking and HTTP/1.0 requests.

Reports p50/p99 of the valid requests in both phases and their ratio, how many slow and
held connections were open during the attack, and how the server answered the attackers
(408 / 400 / 413 / 431 counts). Fails when a valid request fails, or, with --max-p99-ratio,
when the attacked p99 is over that multiple of the quiet one.
"""
import argparse, http.client, json, random, selectors, socket, sys, threading, time


def valid_load(host, port, seconds, clients, users, errors):
    latencies = []
    lock = threading.Lock()
    stop = time.time() + seconds

    def run(seed):
        rng = random.Random(seed)
        conn = http.client.HTTPConnection(host, port, timeout=10)
        mine = []
        while time.time() < stop:
            user = rng.choice(users)
            t = time.perf_counter()
            try:
                conn.request("GET", f"/v1/models/shop/recommend?user={user}&k=10")
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    errors.append(f"status {r.status}")
            except Exception as e:  # a valid request must never fail
                errors.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=10)
                continue
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads: t.start()
    for t in threads: t.join()
    latencies.sort()
    q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000
    return {"requests": len(latencies), "p50_ms": round(q(0.5), 3), "p99_ms": round(q(0.99), 3),
            "rate": round(len(latencies) / seconds, 1)}


class Holders:
    """SLOW slowloris and HELD silent connections, kept open from one thread."""

    def __init__(self, host, port, slow, held):
        self.addr, self.want = (host, port), {"slow": slow, "held": held}
        self.sel = selectors.DefaultSelector()
        self.open = {"slow": 0, "held": 0}
        self.answers = {}
        self.min_open = {"slow": 1 << 30, "held": 1 << 30}
        self.running = True

    def connect(self, kind):
        s = socket.socket()
        s.setblocking(True)
        s.connect(self.addr)
        s.setblocking(False)
        if kind == "slow":
            s.send(b"GET /v1/models/shop/recommend?user=u1 HTTP/1.1\r\nHost: x\r\n")
        self.sel.register(s, selectors.EVENT_READ, [kind, b""])
        self.open[kind] += 1

    def run(self, measuring):
        for kind, n in self.want.items():
            for _ in range(n): self.connect(kind)
        last_drip = time.time()
        while self.running:
            for key, _ in self.sel.select(timeout=0.2):
                s, (kind, got) = key.fileobj, key.data
                try:
                    chunk = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    chunk = b""
                if chunk:
                    key.data[1] = got + chunk
                    continue
                status = got.split(b" ", 2)[1].decode() if got.count(b" ") >= 2 else "closed"
                self.answers[f"{kind}:{status}"] = self.answers.get(f"{kind}:{status}", 0) + 1
                self.sel.unregister(s); s.close(); self.open[kind] -= 1
                self.connect(kind)
            if time.time() - last_drip >= 1.0:
                last_drip = time.time()
                for key in list(self.sel.get_map().values()):
                    if key.data[0] == "slow":
                        try: key.fileobj.send(b"X-Slow: 1\r\n")
                        except OSError: pass
            if measuring.is_set():
                for k in self.open: self.min_open[k] = min(self.min_open[k], self.open[k])


def junk(host, port, stop, answers):
    big_header = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
    big_body = (b"POST /v1/models/shop/interactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 3000000\r\n\r\n" + b"[" * 3_000_000)
    cases = [("garbage", b"HELLO WORLD\r\n\r\n"), ("bad_version", b"GET /livez HTTP/7.0\r\n\r\n"),
             ("big_header", big_header), ("big_body", big_body),
             ("bad_chunk", b"POST /v1/models/shop/recommend HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
             ("http10", b"GET /livez HTTP/1.0\r\n\r\n"), ("bad_k", b"GET /v1/models/shop/recommend?user=u1&k=abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
             ("bad_json", b"POST /v1/models/shop/recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{{{{{")]
    i = 0
    while not stop.is_set():
        name, data = cases[i % len(cases)]; i += 1
        try:
            s = socket.create_connection((host, port), timeout=5)
            try: s.sendall(data)
            except OSError: pass  # the server may answer and close before a large body is sent
            got = b""
            while True:
                c = s.recv(65536)
                if not c: break
                got += c
            s.close()
            status = got.split(b" ", 2)[1].decode() if got.count(b" ") >= 2 else "no answer"
            json_body = b"\r\n\r\n" in got and got.split(b"\r\n\r\n", 1)[1][:1] in (b"{", b"")
            key = f"{name}:{status}" + ("" if json_body else ":not-json")
        except Exception as e:
            key = f"{name}:{type(e).__name__}"
        answers[key] = answers.get(key, 0) + 1
        time.sleep(0.02)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--slow", type=int, default=50)
    ap.add_argument("--held", type=int, default=500)
    ap.add_argument("--users", default="0-299", help="user ids u<lo>..u<hi> (the generated catalog's)")
    ap.add_argument("--max-p99-ratio", type=float, default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    lo, hi = map(int, a.users.split("-"))
    users = [f"u{u}" for u in range(lo, hi + 1)]

    errors = []
    valid_load(a.host, a.port, 2, a.clients, users, errors)  # warm up
    quiet = valid_load(a.host, a.port, a.seconds, a.clients, users, errors)
    print(f"attack: quiet  {quiet}")

    holders = Holders(a.host, a.port, a.slow, a.held)
    measuring, stop = threading.Event(), threading.Event()
    junk_answers = {}
    threads = [threading.Thread(target=holders.run, args=(measuring,)),
               threading.Thread(target=junk, args=(a.host, a.port, stop, junk_answers))]
    for t in threads: t.start()
    time.sleep(3)  # every slow and held connection open
    measuring.set()
    attacked = valid_load(a.host, a.port, a.seconds, a.clients, users, errors)
    measuring.clear()
    stop.set(); holders.running = False
    for t in threads: t.join()
    print(f"attack: attack {attacked}")
    print(f"attack: open during the attack at least: {holders.min_open} (of slow {a.slow}, held {a.held})")
    print(f"attack: answers to the slow and held connections: {dict(sorted(holders.answers.items()))}")
    print(f"attack: answers to the junk requests: {dict(sorted(junk_answers.items()))}")
    ratio = attacked["p99_ms"] / max(quiet["p99_ms"], 1e-9)
    print(f"attack: p99 under attack / quiet = {ratio:.2f}; failed valid requests: {len(errors)}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"quiet": quiet, "attack": attacked, "p99_ratio": round(ratio, 3), "min_open": holders.min_open,
                       "slow_and_held_answers": holders.answers, "junk_answers": junk_answers,
                       "failed_valid": len(errors), "slow": a.slow, "held": a.held, "clients": a.clients}, f, indent=1)
    bad = []
    if errors: bad.append(f"{len(errors)} valid requests failed, first: {errors[:3]}")
    if holders.min_open["slow"] < a.slow * 0.8 or holders.min_open["held"] < a.held * 0.8:
        bad.append("the attack did not keep its connections open (the numbers above are not an attack)")
    not_json = [k for k in junk_answers if k.endswith(":not-json")]
    if not_json: bad.append(f"answers without a JSON body: {not_json}")
    if a.max_p99_ratio and ratio > a.max_p99_ratio: bad.append(f"p99 ratio {ratio:.2f} is over {a.max_p99_ratio}")
    if bad:
        print("attack: FAILED: " + "; ".join(bad)); sys.exit(1)
    print("attack: passed")


if __name__ == "__main__":
    main()
