#!/usr/bin/env python3
"""The table and JSON of tools/serve-bench: serve_bench_report.py DIR RESULTS OUT ITEMS SECONDS."""
import json, sys, os, statistics
d, results, out, items, secs = sys.argv[1:]
rows = [json.loads(l) for l in open(results)]
caps = [json.load(open(f"{d}/{f}")) for f in sorted(os.listdir(d)) if f.startswith("capacity-") and f.endswith(".json")]
cores = caps[0]["cores"]
capacity = statistics.median(c["capacity_rps"] for c in caps)
measured = statistics.median(c["concurrent_rps"] for c in caps)
ideal = statistics.median(c["ideal_capacity_rps"] for c in caps)
def med(server, conn, key):
    v = [r[key] for r in rows if r["server"] == server and r["connections"] == conn]
    return statistics.median(v) if v else None
print(f"in-process, {len(caps)} runs between the served ones (medians): {cores} callers at once {measured:.0f} requests/s, "
      f"{statistics.median(c['cpu_us_per_request'] for c in caps):.0f} CPU us a request -> capacity {capacity:.0f} requests/s on {cores} cores "
      f"(one request alone: {statistics.median(c['mean_us'] for c in caps):.0f} us; cores / that: {ideal:.0f} requests/s)")
print(f"{'conn':>4} {'funnel rps':>11} {'python rps':>11} {'ratio':>6} {'funnel p99':>11} {'python p99':>11} {'of capacity':>12} {'of measured':>12} {'of ideal':>9}")
summary = {}
for conn in (16, 64):
    f, p = med("funnel", conn, "rps"), med("python", conn, "rps")
    f99, p99 = med("funnel", conn, "p99_ms"), med("python", conn, "p99_ms")
    print(f"{conn:>4} {f:>11.0f} {p:>11.0f} {f / p:>5.1f}x {f99:>9.1f}ms {p99:>9.1f}ms {f / capacity:>11.0%} {f / measured:>11.0%} {f / ideal:>8.0%}")
    summary[str(conn)] = dict(funnel_rps=f, python_rps=p, ratio=f / p, funnel_p99_ms=f99, python_p99_ms=p99, of_capacity=f / capacity,
                         of_measured_capacity=f / measured, of_ideal_capacity=f / ideal)
mixed = [r for r in rows if r["server"] == "funnel-5pct-writes"]
for r in mixed:
    print(f"funnel, 64 connections, 5% writes: {r['rps']:.0f} requests/s, p99 {r['p99_ms']:.1f} ms, non-2xx {r['non2xx']}")
off = [r for r in rows if r["server"] == "funnel-zipf-nocache"]; on = [r for r in rows if r["server"] == "funnel-zipf-cache"]
if off and on:
    print(f"funnel, 64 connections, Zipf users: cache off {off[0]['rps']:.0f} requests/s (p99 {off[0]['p99_ms']:.1f} ms), "
          f"on {on[0]['rps']:.0f} requests/s (p99 {on[0]['p99_ms']:.1f} ms): {on[0]['rps'] / off[0]['rps']:.1f}x")
    summary["zipf_cache_gain"] = on[0]["rps"] / off[0]["rps"]
peer = json.load(open(f"{d}/peer-versions.json")) if os.path.exists(f"{d}/peer-versions.json") else None
if peer: print("peer: " + ", ".join(f"{k} {v}" for k, v in peer.items() if k != "blas") + f"; BLAS {peer.get('blas')}")
json.dump(dict(items=int(items), seconds_per_run=int(secs), in_process=caps, capacity_rps=capacity,
               measured_capacity_rps=measured, ideal_capacity_rps=ideal, peer_versions=peer, python="tools/peer_service.py: standard-library HTTP server, one process per core (SO_REUSEPORT), hnswlib + LightGBM + numpy",
               runs=rows,
               summary=summary, machine=caps[0].get("machine")), open(out, "w"), indent=2, sort_keys=True)
print(f"wrote {out}")
