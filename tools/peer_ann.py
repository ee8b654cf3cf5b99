#!/usr/bin/env python3
"""HNSW recall@k vs QPS: Funnel against hnswlib, FAISS IndexHNSWFlat (and USearch when
installed), same files, same M / efConstruction / ef list and threads, same run.

Usage: tools/peer-ann [--base F --query F --gt F] [--metric l2] [--m 16] [--ef-construction 200]
                      [--threads 2] [--quantization none|int8] [--peers hnswlib,faiss,usearch]
Defaults to ../shared/data/mnist. Prints one table per engine and the headline ratios
of PROTOCOLS.md section 1: QPS at recall 0.90 / 0.95 / 0.99 (interpolated linearly in
log QPS between bracketing ef points), build seconds and bytes per vector.

Peers are timed single-threaded through their batch call (knn_query / search over all
queries with one thread), which leaves out Python's per-call overhead and so favours
them; Funnel is timed one query per call.
"""
import argparse, json, math, os, platform, subprocess, sys, tempfile, time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_exact import read_vectors, ROOT  # noqa: E402


def read_ivecs(path):
    a = np.fromfile(path, dtype=np.int32)
    d = a[0]
    return a.reshape(-1, d + 1)[:, 1:]


def recall_at_k(ids, xq, xb, gt, k, metric):
    """Ties at the k-th distance count as hits (PROTOCOLS.md section 1). Vectorized in
    blocks of queries; distances in float64 so that ties are exact for integer data."""
    ids = np.asarray(ids, dtype=np.int64)[:, :k]
    hits = 0
    for s in range(0, len(ids), 500):
        q = xq[s:s + 500].astype(np.float64)
        I = ids[s:s + 500]
        T = gt[s:s + 500, :k]
        def dist(index):
            v = xb[np.clip(index, 0, len(xb) - 1)].astype(np.float64)
            if metric == "l2":
                return ((v - q[:, None, :]) ** 2).sum(-1)
            return -(v * q[:, None, :]).sum(-1)
        kth = dist(T[:, -1:])[:, 0]
        d = dist(I)
        member = (I[:, :, None] == T[:, None, :]).any(-1)
        ok = (I >= 0) & (member | (d <= kth[:, None]))
        hits += int(ok.sum())
    return hits / (len(ids) * k)


def qps_at(points, target):
    """QPS at a recall target, interpolated linearly in log QPS; None if never reached."""
    pts = sorted((p["recall"], p["qps"]) for p in points if p.get("qps"))
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 <= target <= r1:
            if r1 == r0:
                return max(q0, q1)
            t = (target - r0) / (r1 - r0)
            return math.exp(math.log(q0) + t * (math.log(q1) - math.log(q0)))
    if pts and pts[0][0] >= target:
        return pts[0][1]
    return None


def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bench_peer(name, build, search, xq, xb, gt, k, efs, metric):
    """bytes_per_vector is the growth of resident memory over the build (the index's
    real memory, as Funnel reports its own), with the saved file size beside it."""
    before = resident_bytes()
    t = time.perf_counter()
    index, file_bytes = build()
    build_s = time.perf_counter() - t
    nbytes = resident_bytes() - before
    points = []
    for ef in efs:
        t = time.perf_counter()
        ids = search(index, ef)
        dt = time.perf_counter() - t
        points.append({"ef": ef, "recall": recall_at_k(ids, xq, xb, gt, k, metric), "qps": len(xq) / dt})
    return {"engine": name, "build_seconds": build_s, "bytes_per_vector": nbytes / len(xb),
            "file_bytes_per_vector": file_bytes / len(xb), "points": points}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default=os.path.join(ROOT, "../shared/data/mnist/train-images-idx3-ubyte"))
    ap.add_argument("--query", default=os.path.join(ROOT, "../shared/data/mnist/t10k-images-idx3-ubyte"))
    ap.add_argument("--gt", default=os.path.join(ROOT, "../shared/data/mnist/t10k_vs_train.groundtruth.top100.ivecs"))
    ap.add_argument("--metric", default="l2", choices=["l2", "ip", "cosine"])
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef", default="10,16,24,32,48,64,96,128,192,256,384,512")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--quantization", default="none", choices=["none", "int8", "fp16"])
    ap.add_argument("--max-queries", type=int, default=None)
    ap.add_argument("--peers", default="hnswlib,faiss,usearch")
    ap.add_argument("--funnel", default=os.path.join(ROOT, ".build/release/funnel"))
    ap.add_argument("--json", default=None, help="write all results here")
    a = ap.parse_args()
    efs = [int(x) for x in a.ef.split(",")]

    xb = read_vectors(a.base)
    xq = read_vectors(a.query)
    gt = read_ivecs(a.gt)
    if a.max_queries:
        xq, gt = xq[: a.max_queries], gt[: a.max_queries]
    n, d = xb.shape
    results = []
    # Peers see cosine as inner product on unit vectors (what Funnel does inside).
    peer_metric = a.metric
    if a.metric == "cosine":
        xb = xb / np.maximum(np.linalg.norm(xb, axis=1, keepdims=True), 1e-30)
        xq = xq / np.maximum(np.linalg.norm(xq, axis=1, keepdims=True), 1e-30)
        peer_metric = "ip"

    # Funnel first, then each peer.
    out = tempfile.mktemp(suffix=".json")
    cmd = [a.funnel, "ann-bench", "--engine", "hnsw", "--base", a.base, "--query", a.query, "--gt", a.gt,
           "--metric", a.metric, "--k", str(a.k), "--m", str(a.m), "--ef-construction", str(a.ef_construction),
           "--ef", a.ef, "--threads", str(a.threads), "--quantization", a.quantization, "--json", out]
    if a.max_queries:
        cmd += ["--max-queries", str(a.max_queries)]
    print("running:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    fr = json.load(open(out))
    os.unlink(out)
    results.append({"engine": "funnel-" + fr["engine"], "build_seconds": fr["build_seconds"],
                    "bytes_per_vector": fr["bytes_per_vector"], "points": fr["points"]})

    peers = a.peers.split(",")
    if "hnswlib" in peers:
        import hnswlib
        def build():
            p = hnswlib.Index(space="l2" if peer_metric == "l2" else "ip", dim=d)
            p.init_index(max_elements=n, M=a.m, ef_construction=a.ef_construction, random_seed=100)
            p.add_items(xb, np.arange(n), num_threads=a.threads)
            f = tempfile.mktemp()
            p.save_index(f)
            size = os.path.getsize(f)
            os.unlink(f)
            return p, size
        def search(p, ef):
            p.set_ef(max(ef, a.k))
            labels, _ = p.knn_query(xq, k=a.k, num_threads=1)
            return labels
        results.append(bench_peer(f"hnswlib {hnswlib.__version__ if hasattr(hnswlib, '__version__') else ''}".strip(),
                                  build, search, xq, xb, gt, a.k, efs, peer_metric))
    if "faiss" in peers:
        import faiss
        def build():
            faiss.omp_set_num_threads(a.threads)
            metric = faiss.METRIC_L2 if peer_metric == "l2" else faiss.METRIC_INNER_PRODUCT
            p = faiss.IndexHNSWFlat(d, a.m, metric)
            p.hnsw.efConstruction = a.ef_construction
            p.add(xb)
            return p, len(faiss.serialize_index(p))
        def search(p, ef):
            faiss.omp_set_num_threads(1)
            p.hnsw.efSearch = max(ef, a.k)
            _, labels = p.search(xq, a.k)
            return labels
        results.append(bench_peer(f"faiss HNSWFlat {faiss.__version__}", build, search, xq, xb, gt, a.k, efs, peer_metric))
    if "usearch" in peers:
        try:
            from usearch.index import Index as UIndex
            import usearch
        except ImportError:
            print("usearch not installed: skipped (pip install usearch into tools/.venv to include it)")
        else:
            def build():
                p = UIndex(ndim=d, metric="l2sq" if peer_metric == "l2" else "ip", dtype="f32",
                           connectivity=a.m, expansion_add=a.ef_construction)
                p.add(np.arange(n), xb, threads=a.threads)
                f = tempfile.mktemp()
                p.save(f)
                size = os.path.getsize(f)
                os.unlink(f)
                return p, size
            def search(p, ef):
                p.expansion_search = max(ef, a.k)
                m = p.search(xq, a.k, threads=1)
                return m.keys
            results.append(bench_peer(f"usearch {usearch.__version__}", build, search, xq, xb, gt, a.k, efs, peer_metric))

    print()
    print(f"{n} x {d} base, {len(xq)} queries, {a.metric}, k={a.k}, M={a.m}, efConstruction={a.ef_construction}, "
          f"build threads={a.threads}, search 1 thread; {platform.machine()}, {os.cpu_count()} cores")
    for r in results:
        extra = f" (saved file {r['file_bytes_per_vector']:.0f})" if "file_bytes_per_vector" in r else ""
        print(f"\n{r['engine']}: build {r['build_seconds']:.2f} s, {r['bytes_per_vector']:.0f} resident bytes/vector{extra}")
        print(f"{'ef':>6} {'recall':>8} {'QPS':>10}")
        for p in r["points"]:
            print(f"{p['ef']:>6} {p['recall']:>8.4f} {p['qps']:>10.1f}")
    base = results[0]
    print("\nheadline (ratio = Funnel / peer):")
    hdr = f"{'engine':<28}{'QPS@0.90':>10}{'QPS@0.95':>10}{'QPS@0.99':>10}{'build s':>9}{'B/vec':>8}"
    print(hdr)
    for r in results:
        cells = [qps_at(r["points"], t) for t in (0.90, 0.95, 0.99)]
        print(f"{r['engine']:<28}" + "".join(f"{c:>10.0f}" if c else f"{'-':>10}" for c in cells)
              + f"{r['build_seconds']:>9.2f}{r['bytes_per_vector']:>8.0f}")
    for r in results[1:]:
        ratios = []
        for t in (0.90, 0.95, 0.99):
            f, p = qps_at(base["points"], t), qps_at(r["points"], t)
            ratios.append(f"{f / p:.2f}x" if f and p else "-")
        print(f"{'ratio vs ' + r['engine']:<28}" + "".join(f"{x:>10}" for x in ratios)
              + f"{r['build_seconds'] / base['build_seconds']:>8.2f}x" + f"{r['bytes_per_vector'] / base['bytes_per_vector']:>7.2f}x")
    print("(build and bytes ratios are peer / Funnel: above 1 means Funnel builds faster / uses less)")
    if a.json:
        json.dump(results, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    main()
