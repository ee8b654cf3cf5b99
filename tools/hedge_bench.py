"""Tail latency with and without hedged reads, through the Python client (funnel_client).

    python3 tools/hedge_bench.py --replicas URL1,URL2,URL3 --users 300 --seconds 10 --rounds 2

Open loop by default: requests are sent at a fixed RATE per second whatever the answers
do (a pool of callers takes them at their scheduled times), and each latency is counted
from its scheduled time, so a stalled caller cannot hide the requests it delayed, and both
arms see the same load. With --rate 0, a closed loop: THREADS callers each send the next
request when the last is answered (the hedged arm then sends more per second). Every
request is a recommend call for a random user. Arms alternate (plain, hedged, plain, hedged, ...) so that both see the
same machine; each arm's client is warmed first (the hedge needs latencies to know its
p95). Prints p50 / p95 / p99 / p99.9 per arm over all its rounds, the hedge rate and the
requests the hedges added, and writes the figures as JSON when asked.
"""
import argparse
import json
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python"))
from funnel_client import Funnel, Hedge  # noqa: E402


def quantile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run_open(client, users, seconds, rate, seed, workers=32):
    """Requests at `rate` per second for `seconds`, latency from each one's scheduled time."""
    latencies, errors = [], []
    lock = threading.Lock()
    rng = random.Random(seed)
    start = time.perf_counter() + 0.05
    n = int(seconds * rate)
    schedule = [(start + i / rate, f"u{rng.randrange(users)}") for i in range(n)]
    cursor = iter(schedule)

    def caller():
        mine, bad = [], []
        while True:
            with lock:
                job = next(cursor, None)
            if job is None:
                break
            at, user = job
            wait = at - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            try:
                client.recommend(user, k=10)
                mine.append(time.perf_counter() - at)
            except Exception as e:  # noqa: BLE001 - counted and reported
                bad.append(repr(e))
        with lock:
            latencies.extend(mine)
            errors.extend(bad[:3] + ([f"... {len(bad)} errors in all"] if len(bad) > 3 else []))

    ts = [threading.Thread(target=caller) for _ in range(workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return latencies, errors


def run(client, users, seconds, threads, seed, rate=0):
    if rate > 0:
        return run_open(client, users, seconds, rate, seed)
    latencies, errors = [], []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def caller(i):
        rng = random.Random(seed * 1000 + i)
        mine, bad = [], 0
        while time.perf_counter() < stop:
            user = f"u{rng.randrange(users)}"
            t0 = time.perf_counter()
            try:
                client.recommend(user, k=10)
                mine.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - counted and reported
                bad += 1
                if bad <= 3:
                    errors.append(repr(e))
        with lock:
            latencies.extend(mine)
            errors.extend([] if bad <= 3 else [f"... {bad} errors in all"])

    ts = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return latencies, errors


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--replicas", required=True, help="comma-separated base URLs")
    p.add_argument("--model", default="shop")
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=4, help="closed loop: callers")
    p.add_argument("--rate", type=float, default=300, help="open loop: requests per second (0: closed loop)")
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--json")
    a = p.parse_args()
    urls = a.replicas.split(",")
    arms = {
        "plain": Funnel(urls, model=a.model),
        "hedged": Funnel(urls, model=a.model, hedge=Hedge()),
    }
    for name, client in arms.items():
        run(client, a.users, a.warmup, a.threads, seed=0, rate=a.rate)
        client.stats.clear()
    results = {name: {"latencies": [], "errors": [], "seconds": 0.0} for name in arms}
    for r in range(a.rounds):
        for name, client in arms.items():
            t0 = time.perf_counter()
            lat, err = run(client, a.users, a.seconds, a.threads, seed=r + 1, rate=a.rate)
            results[name]["seconds"] += time.perf_counter() - t0
            results[name]["latencies"] += lat
            results[name]["errors"] += err
            print(f"hedge: round {r + 1} {name}: {len(lat)} reads, p99 {quantile(sorted(lat), 0.99) * 1e3:.1f} ms", flush=True)
    out = {}
    for name, client in arms.items():
        lat = sorted(results[name]["latencies"])
        s = client.stats
        out[name] = {
            "reads": len(lat),
            "reads_per_second": len(lat) / results[name]["seconds"],
            "p50_ms": quantile(lat, 0.50) * 1e3,
            "p95_ms": quantile(lat, 0.95) * 1e3,
            "p99_ms": quantile(lat, 0.99) * 1e3,
            "p999_ms": quantile(lat, 0.999) * 1e3,
            "max_ms": lat[-1] * 1e3 if lat else float("nan"),
            "hedges": s["hedges"],
            "hedges_won": s["hedges_won"],
            "hedge_rate": s["hedges"] / max(1, s["reads"]),
            "errors": results[name]["errors"],
        }
        client.close()
    load = f"open loop, {a.rate:g} requests/s" if a.rate > 0 else f"closed loop, {a.threads} callers"
    print(f"hedge: {load}, {a.rounds} rounds of {a.seconds:g} s per arm")
    print(f"{'arm':8} {'reads':>7} {'reads/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} {'max ms':>7} {'hedged':>7} {'won':>6}")
    for name, o in out.items():
        print(f"{name:8} {o['reads']:7d} {o['reads_per_second']:8.0f} {o['p50_ms']:7.2f} {o['p95_ms']:7.2f} {o['p99_ms']:7.2f} "
              f"{o['p999_ms']:8.2f} {o['max_ms']:7.1f} {o['hedge_rate'] * 100:6.1f}% {o['hedges_won']:6d}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
    bad = [e for o in out.values() for e in o["errors"]]
    if bad:
        sys.exit("hedge: failed reads: " + "; ".join(bad[:5]))
    ratio = out["plain"]["p99_ms"] / out["hedged"]["p99_ms"]
    print(f"hedge: p99 plain / hedged = {ratio:.2f}x, at {out['hedged']['hedge_rate'] * 100:.1f}% more requests")
    if ratio <= 1:
        sys.exit("hedge: hedging did not lower the p99")


if __name__ == "__main__":
    main()
