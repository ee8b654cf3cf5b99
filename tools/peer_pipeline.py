#!/usr/bin/env python3
"""The funnel of PROTOCOLS.md section 4 assembled in Python, as a user would glue it:
hnswlib retrieval -> LightGBM lambdarank predict -> numpy freshness + MMR + category cap.

It reads what `funnel pipeline-bench --export DIR` wrote (the same item vectors, request
vectors, user histories, item feature inputs and ranker training set), trains LightGBM
with the same parameters, runs the same requests one at a time on one thread, and
prints p50 / p99 per stage and in total next to Funnel's JSON when given.

    tools/peer-pipeline                      # runs funnel pipeline-bench, then this
    python tools/peer_pipeline.py DIR [--funnel-json FUNNEL.json]
"""
import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402


def read_fvecs(path):
    a = np.fromfile(path, dtype=np.int32)
    d = a[0]
    return a.reshape(-1, d + 1)[:, 1:].view(np.float32).copy()


def read_ivecs(path):
    a = np.fromfile(path, dtype=np.int32)
    d = a[0]
    return a.reshape(-1, d + 1)[:, 1:].copy()


def read_ragged_ivecs(path):
    a = np.fromfile(path, dtype=np.int32)
    out, i = [], 0
    while i < len(a):
        n = a[i]
        out.append(a[i + 1:i + 1 + n])
        i += 1 + n
    return out


def build(d, cache=False):
    """The peer pipeline over an export folder: (retrieve, rank, rerank, data). With `cache`,
    the index and the model are saved beside the data on the first call and loaded after."""
    import hnswlib
    import lightgbm as lgb

    p = json.load(open(f"{d}/params.json"))
    items = read_fvecs(f"{d}/items.fvecs")
    queries = read_fvecs(f"{d}/requests.fvecs")
    item_feat = read_fvecs(f"{d}/item_features.fvecs")  # log_pop, log_recent, age_days, mean_rating, price
    category = read_ivecs(f"{d}/item_category.ivecs")[:, 0]
    age_seconds = read_fvecs(f"{d}/item_age_seconds.fvecs")[:, 0].astype(np.float64)
    histories = read_ragged_ivecs(f"{d}/history.ivecs")
    X = read_fvecs(f"{d}/ranker_features.fvecs")
    y = read_fvecs(f"{d}/ranker_labels.fvecs")[:, 0]
    groups = read_ivecs(f"{d}/ranker_groups.ivecs")[:, 0]
    n, dim = items.shape
    ncat = p["categories"]

    # With `cache` (tools/peer_service.py, as a team would build offline): built once, saved
    # beside the data, loaded by every later process.
    index_file, model_file = f"{d}/peer-hnswlib.bin", f"{d}/peer-lightgbm.txt"
    t = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=dim)  # unit vectors: inner product = cosine
    if cache and os.path.exists(index_file):
        index.load_index(index_file, max_elements=n)
    else:
        index.init_index(max_elements=n, M=p["M"], ef_construction=p["ef_construction"], random_seed=42)
        index.set_num_threads(2)
        index.add_items(items, np.arange(n))
        if cache:
            index.save_index(index_file + ".tmp")
            os.replace(index_file + ".tmp", index_file)
    index.set_num_threads(1)
    build = time.perf_counter() - t
    t = time.perf_counter()
    if cache and os.path.exists(model_file):
        booster = lgb.Booster(model_file=model_file)
    else:
        booster = lgb.train(
            dict(objective="lambdarank", num_leaves=p["num_leaves"], min_data_in_leaf=p["min_data_in_leaf"],
                 learning_rate=p["learning_rate"], num_threads=2, verbose=-1, seed=42),
            lgb.Dataset(X, y, group=groups), num_boost_round=p["trees"])
        if cache:
            booster.save_model(model_file + ".tmp")
            os.replace(model_file + ".tmp", model_file)
    train = time.perf_counter() - t
    print(f"peer: hnswlib build {build:.1f} s, LightGBM {p['trees']} trees in {train:.1f} s")

    centered = items - items.mean(axis=0)
    centered /= np.maximum(np.linalg.norm(centered, axis=1, keepdims=True), 1e-12)
    half_life, w = p["freshness_half_life_seconds"], p["freshness_weight"]
    decay = (1 - w) + w * np.power(0.5, np.maximum(age_seconds, 0) / half_life)
    lam, pool, k, cap, cand = p["mmr_lambda"], p["mmr_pool"], p["k"], p["max_per_category"], p["candidates"]

    def retrieve(q, hist):
        exclude = np.unique(hist)
        want = cand + len(exclude)
        index.set_ef(max(p["ef"], want))
        labels, dist = index.knn_query(q, k=want)
        labels, dist = labels[0], dist[0]
        keep = ~np.isin(labels, exclude)
        return labels[keep][:cand], (1 - dist[keep][:cand])

    def rank(ids, sims, hist):
        m = len(ids)
        shares = np.bincount(category[hist], minlength=ncat) / max(len(hist), 1) if len(hist) else np.zeros(ncat)
        f = np.empty((m, 9), dtype=np.float32)
        f[:, 0] = sims
        f[:, 1] = np.arange(m)
        f[:, 2:5] = item_feat[ids, 0:3]
        f[:, 5] = shares[category[ids]]
        f[:, 6] = np.log1p(len(hist))
        f[:, 7:9] = item_feat[ids, 3:5]
        scores = booster.predict(f, num_threads=1)
        order = np.lexsort((ids, -scores))
        return ids[order], scores[order]

    def rerank(ids, scores):
        ids, s = ids[:pool], scores[:pool].astype(np.float64)
        lo, hi = s.min(), s.max()
        s = (s - lo) / (hi - lo) if hi > lo else np.ones_like(s)
        s = s * decay[ids]
        order = np.lexsort((ids, -s))
        ids, s = ids[order], s[order]
        e = centered[ids]
        m = len(ids)
        max_sim = np.full(m, -np.inf)
        taken = np.zeros(m, dtype=bool)
        picks = []
        for _ in range(m):
            v = lam * s - (1 - lam) * np.where(np.isinf(max_sim), 0, max_sim)
            v[taken] = -np.inf
            b = int(np.argmax(v))
            taken[b] = True
            picks.append(b)
            np.maximum(max_sim, e @ e[b], out=max_sim)
        out, per = [], {}
        for b in picks:
            c = category[ids[b]]
            if cap and per.get(c, 0) >= cap:
                continue
            per[c] = per.get(c, 0) + 1
            out.append(ids[b])
            if len(out) == k:
                break
        return out

    data = dict(items=items, queries=queries, histories=histories, params=p)
    return retrieve, rank, rerank, data


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--funnel-json", help="funnel pipeline-bench --json output, for the ratio table")
    args = ap.parse_args()
    retrieve, rank, rerank, data = build(args.dir)
    d, p, items, queries, histories = args.dir, data["params"], data["items"], data["queries"], data["histories"]
    cand = p["candidates"]
    # Candidate recall against exact search (same exclusions), first 200 requests, as Funnel reports it.
    found = wanted = 0
    for r in range(min(200, len(queries))):
        ids, _ = retrieve(queries[r:r + 1], histories[r])
        scores = items @ queries[r]
        scores[np.unique(histories[r])] = -np.inf
        truth = np.argpartition(-scores, cand)[:cand]
        found += len(np.intersect1d(ids, truth))
        wanted += cand
    print(f"peer candidate recall@{cand} against exact search: {found / wanted:.4f}")

    times = {"retrieval": [], "ranking": [], "rerank": [], "total": []}
    for r in range(min(200, len(queries))):  # warm-up
        ids, sims = retrieve(queries[0:1], histories[0])
        rerank(*rank(ids, sims, histories[0]))
    for r in range(len(queries)):
        t0 = time.perf_counter()
        ids, sims = retrieve(queries[r:r + 1], histories[r])
        t1 = time.perf_counter()
        ids, scores = rank(ids, sims, histories[r])
        t2 = time.perf_counter()
        rerank(ids, scores)
        t3 = time.perf_counter()
        times["retrieval"].append(t1 - t0)
        times["ranking"].append(t2 - t1)
        times["rerank"].append(t3 - t2)
        times["total"].append(t3 - t0)

    funnel = json.load(open(args.funnel_json)) if args.funnel_json else None
    print(f"{len(queries)} requests, one at a time on one thread; microseconds")
    header = f"{'stage':<10} {'python p50':>11} {'python p99':>11}"
    if funnel:
        header += f" {'funnel p50':>11} {'funnel p99':>11} {'p99 ratio':>10}"
    print(header)
    result = {}
    for stage in ["retrieval", "ranking", "rerank", "total"]:
        a = np.array(times[stage]) * 1e6
        p50, p99 = np.percentile(a, 50), np.percentile(a, 99)
        result[stage] = {"p50_us": p50, "p99_us": p99}
        line = f"{stage:<10} {p50:>11.0f} {p99:>11.0f}"
        if funnel:
            f50, f99 = funnel[stage]["p50_us"], funnel[stage]["p99_us"]
            line += f" {f50:>11.0f} {f99:>11.0f} {p99 / f99:>9.1f}x"
        print(line)
    json.dump(result, open(f"{d}/peer.json", "w"), indent=2)


if __name__ == "__main__":
    main()
