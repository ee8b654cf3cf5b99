#!/usr/bin/env python3
"""Exact k-NN throughput: Funnel's ExactIndex against FAISS IndexFlat, same data,
same thread count, same run (alternating Funnel, FAISS, Funnel, FAISS ...).

Usage: tools/peer-exact [--base FILE --query FILE] [--threads N] [--k 10] [--reps 3]
Defaults to ../shared/data/mnist (60,000 x 784 base, 10,000 queries).
"""
import argparse, json, os, statistics, struct, subprocess, sys, tempfile, time, platform

import numpy as np
import faiss

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_vectors(path):
    data = open(path, "rb").read()
    if path.endswith(".fvecs"):
        d = struct.unpack_from("<i", data)[0]
        return np.frombuffer(data, dtype=np.float32).reshape(-1, d + 1)[:, 1:].copy()
    if path.endswith(".bvecs"):
        d = struct.unpack_from("<i", data)[0]
        return np.frombuffer(data, dtype=np.uint8).reshape(-1, d + 4)[:, 4:].astype(np.float32)
    if path.endswith(".npy"):
        return np.load(path).astype(np.float32)
    # IDX
    ndim = data[3]
    dims = struct.unpack_from(">" + "I" * ndim, data, 4)
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims[0], -1).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default=os.path.join(ROOT, "../shared/data/mnist/train-images-idx3-ubyte"))
    ap.add_argument("--query", default=os.path.join(ROOT, "../shared/data/mnist/t10k-images-idx3-ubyte"))
    ap.add_argument("--metric", default="l2", choices=["l2", "ip"])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--max-queries", type=int, default=None)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--funnel", default=os.path.join(ROOT, ".build/release/funnel"))
    a = ap.parse_args()

    xb = read_vectors(a.base)
    xq = read_vectors(a.query)
    if a.max_queries:
        xq = xq[: a.max_queries]
    nq = xq.shape[0]
    faiss.omp_set_num_threads(a.threads)
    index = faiss.IndexFlatL2(xb.shape[1]) if a.metric == "l2" else faiss.IndexFlatIP(xb.shape[1])
    index.add(xb)

    funnel_qps, faiss_qps = [], []
    out = tempfile.mktemp(suffix=".json")
    cmd = [a.funnel, "ann-bench", "--base", a.base, "--query", a.query, "--metric", a.metric,
           "--k", str(a.k), "--threads", str(a.threads), "--engine", "exact", "--json", out,
           "--single-queries", "0"]
    if a.max_queries:
        cmd += ["--max-queries", str(a.max_queries)]
    agree = None
    for rep in range(a.reps):
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        funnel_qps.append(json.load(open(out))["points"][0]["batch_qps"])
        t = time.perf_counter()
        D, I = index.search(xq, a.k)
        faiss_qps.append(nq / (time.perf_counter() - t))
        print(f"rep {rep + 1}: funnel {funnel_qps[-1]:.1f} QPS, faiss {faiss_qps[-1]:.1f} QPS", flush=True)
    os.unlink(out)

    fm, xm = statistics.median(funnel_qps), statistics.median(faiss_qps)
    print()
    print(f"exact k-NN, {xb.shape[0]} x {xb.shape[1]} base, {nq} queries, k={a.k}, metric {a.metric}, "
          f"{a.threads} threads, {platform.processor() or platform.machine()}")
    print(f"faiss-cpu {faiss.__version__}, numpy {np.__version__}")
    print(f"{'engine':<22}{'batch QPS (median)':>20}")
    print(f"{'Funnel ExactIndex':<22}{fm:>20.1f}")
    print(f"{'FAISS IndexFlat':<22}{xm:>20.1f}")
    print(f"ratio Funnel / FAISS: {fm / xm:.2f}x")


if __name__ == "__main__":
    main()
