#!/usr/bin/env python3
"""Ten million items on one node: Funnel's HNSW against hnswlib from 1M to 10M vectors.

Usage: tools/scale [--sizes 1000000,10000000] [--dim 128] [--data DIR] [--quantization fp16]
                   [--m 16] [--ef-construction 200] [--threads 2] [--peer-max N] [--json FILE]

For each size it generates clustered vectors (funnel generate vectors: a Gaussian mixture
with one cluster per 10,000 vectors, cosine, exact top-100 ground truth for 1,000 queries),
then, each in its own process so that each peak resident memory is its own:

  funnel build   ann-bench --stream --save: the base is read a slice at a time (never held
                 whole), the graph streamed to its file; build seconds on --threads
                 threads, peak RSS of the build.
  funnel serve   ann-bench --index FILE --mmap: the saved file mapped read-only, load
                 seconds, recall@10 and one-thread QPS over an ef sweep, peak RSS.
                 For fp16 a second time with --rescore base.fvecs: candidates re-scored
                 with the float rows of the mapped input (their pages count in its RSS).
  hnswlib build  the same base (read a slice at a time as well), same M,
                 efConstruction and threads, save_index; build seconds, peak RSS.
  hnswlib serve  load_index, the same ef sweep through knn_query with one thread (one call
                 for all queries, which favours it over Funnel's one call per query).

hnswlib runs at sizes up to --peer-max. Recall counts ids against the exact top 10 (the base
is never loaded to check ties; on continuous data they do not occur). Prints QPS at recall
0.90 / 0.95 / 0.99 (interpolated in log QPS), bytes per vector, and each figure's growth
from the smallest size to the largest. Never run in CI: at 10M it takes about an hour.
"""
import argparse, json, os, platform, resource, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_ann import qps_at  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GiB = 1 << 30


def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def fvecs_memmap(path):
    import numpy as np
    d = int(np.fromfile(path, dtype=np.int32, count=1)[0])
    raw = np.memmap(path, dtype=np.float32, mode="r")
    return raw.reshape(-1, d + 1)[:, 1:], d


def ivecs(path):
    import numpy as np
    a = np.fromfile(path, dtype=np.int32)
    return a.reshape(-1, a[0] + 1)[:, 1:]


def id_recall(labels, gt, k):
    hits = sum(len(set(row[:k].tolist()) & set(t[:k].tolist())) for row, t in zip(labels, gt))
    return hits / (len(labels) * k)


def hnswlib_build(a):
    """Child process: build from the memmapped base in slices, save, report."""
    import hnswlib
    import numpy as np
    d = int(np.fromfile(a.base, dtype=np.int32, count=1)[0])
    n = os.path.getsize(a.base) // (4 * (d + 1))
    p = hnswlib.Index(space="cosine", dim=d)
    p.init_index(max_elements=n, M=a.m, ef_construction=a.ef_construction, random_seed=100)
    t = time.perf_counter()
    step = 65_536
    for s in range(0, n, step):
        # Read, not mapped: mapped pages would count in its resident memory, and Funnel's
        # streamed build reads its slices the same way.
        rows = min(step, n - s)
        part = np.fromfile(a.base, dtype=np.float32, count=rows * (d + 1), offset=s * 4 * (d + 1)).reshape(rows, d + 1)[:, 1:]
        p.add_items(np.ascontiguousarray(part), np.arange(s, s + rows), num_threads=a.threads)
    build = time.perf_counter() - t
    t = time.perf_counter()
    p.save_index(a.save)
    save = time.perf_counter() - t
    json.dump({"build_seconds": build, "save_seconds": save, "build_peak_rss_bytes": peak_rss(),
               "file_bytes": os.path.getsize(a.save)}, open(a.out, "w"))


def hnswlib_serve(a):
    """Child process: load the saved index, sweep ef on one thread, report."""
    import hnswlib
    import numpy as np
    xq, d = fvecs_memmap(a.query)
    xq = np.ascontiguousarray(xq)
    gt = ivecs(a.gt)
    p = hnswlib.Index(space="cosine", dim=d)
    t = time.perf_counter()
    p.load_index(a.save)
    load = time.perf_counter() - t
    points = []
    for ef in [int(x) for x in a.ef.split(",")]:
        p.set_ef(max(ef, 10))
        t = time.perf_counter()
        labels, _ = p.knn_query(xq, k=10, num_threads=1)
        dt = time.perf_counter() - t
        points.append({"ef": ef, "recall": id_recall(labels, gt, 10), "qps": len(xq) / dt})
    json.dump({"load_seconds": load, "peak_rss_bytes": peak_rss(), "points": points}, open(a.out, "w"))


def run(cmd, log):
    print("$ " + " ".join(cmd), flush=True)
    t = time.perf_counter()
    with open(log, "a") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)
    return time.perf_counter() - t


def fmt_gib(b):
    return f"{b / GiB:.2f}" if b else "-"


def main():
    if len(sys.argv) > 1 and sys.argv[1] in ("_hnswlib_build", "_hnswlib_serve"):
        ap = argparse.ArgumentParser()
        for o in ("--base", "--query", "--gt", "--save", "--out", "--ef"):
            ap.add_argument(o)
        for o in ("--m", "--ef-construction", "--threads"):
            ap.add_argument(o, type=int)
        a = ap.parse_args(sys.argv[2:])
        (hnswlib_build if sys.argv[1] == "_hnswlib_build" else hnswlib_serve)(a)
        return

    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--data", default="/tmp/funnel-scale")
    ap.add_argument("--quantization", default="fp16", choices=["none", "fp16", "int8"])
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ef", default="16,32,64,96,128,192,256,384,512,768,1024")
    ap.add_argument("--peer-max", type=int, default=10_000_000, help="run hnswlib at sizes up to this")
    ap.add_argument("--funnel", default=os.path.join(ROOT, ".build/release/funnel"))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    py = sys.executable
    rows = []
    for n in sizes:
        d = os.path.join(a.data, f"{n}x{a.dim}")
        log = os.path.join(d, "log.txt")
        os.makedirs(d, exist_ok=True)
        files = {f: os.path.join(d, f) for f in ("base.fvecs", "query.fvecs", "gt.ivecs")}
        if not all(os.path.exists(p) for p in files.values()):
            run([a.funnel, "generate", "vectors", "--n", str(n), "--dim", str(a.dim), "--clusters", str(max(10, n // 10_000)),
                 "--metric", "cosine", "--queries", "1000", "--gt-k", "100", "--out", d], log)
        common = ["--query", files["query.fvecs"], "--gt", files["gt.ivecs"], "--k", "10", "--threads", str(a.threads)]
        fidx, fb, fs = os.path.join(d, "funnel.hnsw"), os.path.join(d, "funnel-build.json"), os.path.join(d, "funnel-serve.json")
        run([a.funnel, "ann-bench", "--engine", "hnsw", "--stream", "--base", files["base.fvecs"], "--metric", "cosine",
             "--m", str(a.m), "--ef-construction", str(a.ef_construction), "--quantization", a.quantization,
             "--save", fidx, "--ef", "128", "--single-queries", "0", "--json", fb] + common, log)
        run([a.funnel, "ann-bench", "--engine", "hnsw", "--index", fidx, "--mmap", "--ef", a.ef, "--json", fs] + common, log)
        fr = os.path.join(d, "funnel-serve-rescore.json")
        if a.quantization == "fp16":
            run([a.funnel, "ann-bench", "--engine", "hnsw", "--index", fidx, "--mmap", "--rescore", files["base.fvecs"],
                 "--ef", a.ef, "--json", fr] + common, log)
        b, s = json.load(open(fb)), json.load(open(fs))
        row = {"n": n, "funnel": {"engine": b["engine"], "build_seconds": b["build_seconds"], "save_seconds": b.get("save_seconds"),
                                  "build_peak_rss_bytes": b.get("build_peak_rss_bytes"), "file_bytes": b.get("file_bytes"),
                                  "bytes_per_vector": s["bytes_per_vector"], "load_seconds": s.get("load_seconds"),
                                  "serve_peak_rss_bytes": s.get("peak_rss_bytes"),
                                  "points": [{"ef": p["ef"], "recall": p["recall"], "qps": p["qps"]} for p in s["points"]]},
               "machine": b.get("machine")}
        if os.path.exists(fr):
            x = json.load(open(fr))
            row["funnel+rescore"] = {**row["funnel"], "engine": x["engine"], "load_seconds": x.get("load_seconds"),
                                     "serve_peak_rss_bytes": x.get("peak_rss_bytes"),
                                     "points": [{"ef": p["ef"], "recall": p["recall"], "qps": p["qps"]} for p in x["points"]]}
        os.unlink(fidx)
        if n <= a.peer_max:
            import hnswlib  # noqa: F401  (fail early if missing)
            hidx = os.path.join(d, "hnswlib.bin")
            hb, hs = os.path.join(d, "hnswlib-build.json"), os.path.join(d, "hnswlib-serve.json")
            peer = ["--base", files["base.fvecs"], "--query", files["query.fvecs"], "--gt", files["gt.ivecs"], "--save", hidx,
                    "--ef", a.ef, "--m", str(a.m), "--ef-construction", str(a.ef_construction), "--threads", str(a.threads)]
            run([py, __file__, "_hnswlib_build", "--out", hb] + peer, log)
            run([py, __file__, "_hnswlib_serve", "--out", hs] + peer, log)
            hbj, hsj = json.load(open(hb)), json.load(open(hs))
            hsj["bytes_per_vector"] = hbj["file_bytes"] / n
            row["hnswlib"] = {**hbj, **{k: v for k, v in hsj.items() if k != "peak_rss_bytes"}, "serve_peak_rss_bytes": hsj["peak_rss_bytes"]}
            os.unlink(hidx)
        rows.append(row)
        report(rows, a)
        if a.json:
            json.dump({"rows": rows, "settings": vars(a)}, open(a.json, "w"), indent=2)


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def hnswlib_kernels():
    """Whether the installed hnswlib was compiled with AVX-512 (zmm registers in its code)."""
    try:
        import hnswlib
        out = subprocess.run(["objdump", "-d", hnswlib.__file__], capture_output=True, text=True).stdout
        return "AVX-512 (built here with -march=native)" if "zmm" in out else ("AVX2" if "ymm" in out else "SSE")
    except Exception:
        return "unknown"


def report(rows, a):
    from importlib.metadata import version
    print(f"\n{a.dim}-d clustered cosine vectors, k 10, M {a.m}, efConstruction {a.ef_construction}, build on {a.threads} threads, "
          f"search on 1; Funnel {a.quantization} (no float copy), hnswlib {version('hnswlib')} float; "
          f"{cpu_model()}, {os.cpu_count()} cores")
    m = next((r.get("machine") for r in rows if r.get("machine")), None) or {}
    print(f"Funnel kernels {m.get('kernels', '?')}, OpenBLAS core {m.get('blas_core', '?')}; "
          f"hnswlib: {hnswlib_kernels()}")
    hdr = (f"{'n':>10} {'engine':<14}{'build s':>9}{'build GiB':>10}{'save s':>8}{'load s':>8}{'serve GiB':>10}{'B/vec':>7}"
           f"{'QPS@.90':>9}{'QPS@.95':>9}{'QPS@.99':>9}")
    print(hdr)
    for r in rows:
        for name in ("funnel", "funnel+rescore", "hnswlib"):
            e = r.get(name)
            if not e:
                continue
            q = [qps_at(e["points"], t) for t in (0.90, 0.95, 0.99)]
            print(f"{r['n']:>10} {name:<14}{e['build_seconds']:>9.1f}{fmt_gib(e.get('build_peak_rss_bytes')):>10}"
                  f"{(e.get('save_seconds') or 0):>8.1f}{(e.get('load_seconds') or 0):>8.1f}{fmt_gib(e.get('serve_peak_rss_bytes')):>10}"
                  f"{e['bytes_per_vector']:>7.0f}" + "".join(f"{x:>9.0f}" if x else f"{'-':>9}" for x in q))
        for name in ("funnel", "funnel+rescore"):
            if "hnswlib" not in r or name not in r:
                continue
            f, h = r[name], r["hnswlib"]
            ratios = []
            for t in (0.90, 0.95, 0.99):
                x, y = qps_at(f["points"], t), qps_at(h["points"], t)
                ratios.append(f"{x / y:.2f}x" if x and y else "-")
            label = "ratio" if name == "funnel" else "ratio rescore"
            print(f"{'':>10} {label:<14}{h['build_seconds'] / f['build_seconds']:>8.2f}x"
                  f"{h['build_peak_rss_bytes'] / f['build_peak_rss_bytes']:>9.2f}x{'':>16}"
                  f"{h['serve_peak_rss_bytes'] / f['serve_peak_rss_bytes']:>9.2f}x{h['bytes_per_vector'] / f['bytes_per_vector']:>6.2f}x"
                  + "".join(f"{x:>9}" for x in ratios))
    print("(ratios: build, memory and bytes are hnswlib / Funnel, above 1 means Funnel is faster or smaller; QPS is Funnel / hnswlib)")
    if len(rows) > 1:
        lo, hi = rows[0], rows[-1]
        g = hi["n"] / lo["n"]
        print(f"growth from {lo['n']} to {hi['n']} ({g:.0f}x the items):")
        for name in ("funnel", "funnel+rescore", "hnswlib"):
            if name in lo and name in hi:
                x, y = lo[name], hi[name]
                q0, q1 = qps_at(x["points"], 0.95), qps_at(y["points"], 0.95)
                print(f"  {name:<8} build {y['build_seconds'] / x['build_seconds']:.1f}x, build memory "
                      f"{y['build_peak_rss_bytes'] / x['build_peak_rss_bytes']:.1f}x, serving memory "
                      f"{y['serve_peak_rss_bytes'] / x['serve_peak_rss_bytes']:.1f}x, QPS@0.95 "
                      + (f"{q1 / q0:.2f}x" if q0 and q1 else "-"))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
