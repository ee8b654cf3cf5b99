#!/usr/bin/env python3
"""GBDT ranker and classifier: Funnel against LightGBM and XGBoost on the same files,
same settings, same run (PROTOCOLS.md section 3).

Usage: tools/peer-gbdt [--rounds 100] [--threads N]
Reads ../shared/data/lightgbm_lambdarank and lightgbm_binary. Prints test quality
(NDCG@1/3/5/10, or AUC and logloss), training seconds with 1 thread and all cores,
prediction rows per second on one thread in batches of 1 and of 1,000, model bytes,
and the ratios. All quality figures are computed by this script from each engine's
predictions, with the same NDCG code (LightGBM's definition).
"""
import argparse, json, os, platform, statistics, subprocess, sys, tempfile, time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "../shared/data")


def load_svm(path, nfeat=None):
    labels, rows = [], []
    for line in open(path):
        t = line.split()
        if not t:
            continue
        labels.append(float(t[0]))
        rows.append([(int(a), float(b)) for a, b in (x.split(":") for x in t[1:] if not x.startswith("qid"))])
    n = nfeat or (max(i for r in rows for i, _ in r) + 1)
    X = np.zeros((len(rows), n), dtype=np.float32)
    for i, r in enumerate(rows):
        for k, v in r:
            if k < n:
                X[i, k] = v
    return X, np.array(labels, dtype=np.float32)


def load_tsv(path):
    a = np.loadtxt(path, dtype=np.float32)
    return a[:, 1:], a[:, 0]


def ndcg(scores, labels, groups, k):
    total, start = 0.0, 0
    for g in groups:
        s, l = scores[start:start + g], labels[start:start + g]
        start += g
        gain = 2.0 ** l - 1
        ideal = np.sort(gain)[::-1][:k]
        disc = 1 / np.log2(np.arange(2, 2 + len(ideal)))
        maxdcg = float((ideal * disc).sum())
        if maxdcg <= 0:
            total += 1
            continue
        order = np.argsort(-s, kind="stable")[:k]
        total += float((gain[order] * disc[:len(order)]).sum()) / maxdcg
    return total / len(groups)


def auc(scores, labels, weights):
    order = np.argsort(scores, kind="stable")
    s, y, w = scores[order], labels[order], weights[order]
    pos = neg = area = 0.0
    i = 0
    while i < len(s):
        j = i
        tp = tn = 0.0
        while j < len(s) and s[j] == s[i]:
            if y[j] > 0.5:
                tp += w[j]
            else:
                tn += w[j]
            j += 1
        area += tp * (neg + tn / 2)
        pos += tp
        neg += tn
        i = j
    return area / (pos * neg)


def logloss(p, y, w):
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-(w * (y * np.log(p) + (1 - y) * np.log(1 - p))).sum() / w.sum())


def time_predict(fn, X):
    """Median rows/s over 5 repeats, batches of 1 and of 1,000."""
    r1, r1000 = [], []
    n = min(len(X), 300)
    for _ in range(5):
        t = time.perf_counter()
        for i in range(n):
            fn(X[i:i + 1])
        r1.append(n / (time.perf_counter() - t))
        t = time.perf_counter()
        for i in range(0, len(X), 1000):
            fn(X[i:i + 1000])
        r1000.append(len(X) / (time.perf_counter() - t))
    return statistics.median(r1), statistics.median(r1000)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--funnel", default=os.path.join(ROOT, ".build/release/funnel"))
    ap.add_argument("--tasks", default="lambdarank,binary")
    a = ap.parse_args()

    import lightgbm as lgb
    import xgboost as xgb
    print(f"lightgbm {lgb.__version__}, xgboost {xgb.__version__}, numpy {np.__version__}; "
          f"{platform.machine()}, {os.cpu_count()} cores; rounds {a.rounds}", flush=True)
    tmp = tempfile.mkdtemp()
    common = dict(num_leaves=31, learning_rate=0.1, min_data_in_leaf=50, min_sum_hessian_in_leaf=5, max_bin=255)

    for task in a.tasks.split(","):
        if task == "lambdarank":
            d = os.path.join(DATA, "lightgbm_lambdarank")
            tr, te = os.path.join(d, "rank.train"), os.path.join(d, "rank.test")
            Xtr, ytr = load_svm(tr)
            Xte, yte = load_svm(te, Xtr.shape[1])
            gtr = [int(x) for x in open(tr + ".query")]
            gte = [int(x) for x in open(te + ".query")]
            wtr = wte = None
            fargs = ["--train", tr, "--query", tr + ".query", "--objective", "lambdarank"]
            pargs = ["--data", te]
        else:
            d = os.path.join(DATA, "lightgbm_binary")
            tr, te = os.path.join(d, "binary.train"), os.path.join(d, "binary.test")
            Xtr, ytr = load_tsv(tr)
            Xte, yte = load_tsv(te)
            wtr = np.loadtxt(tr + ".weight", dtype=np.float32)
            wte = np.loadtxt(te + ".weight", dtype=np.float32)
            gtr = gte = None
            fargs = ["--train", tr, "--weight", tr + ".weight", "--delimiter", "tab", "--objective", "binary"]
            pargs = ["--data", te, "--delimiter", "tab"]

        def quality(pred):
            if task == "lambdarank":
                return {f"ndcg@{k}": ndcg(pred, yte, gte, k) for k in (1, 3, 5, 10)}
            p = 1 / (1 + np.exp(-pred))
            return {"auc": auc(pred, yte, wte), "logloss": logloss(p, yte, wte)}

        results = {}
        # Funnel
        fr = {}
        model = os.path.join(tmp, f"{task}.fgb")
        for th in (1, a.threads):
            js = os.path.join(tmp, "train.json")
            subprocess.run([a.funnel, "gbdt", "train", *fargs, "--num-leaves", "31", "--learning-rate", "0.1",
                            "--min-data-in-leaf", "50", "--min-sum-hessian-in-leaf", "5", "--max-bin", "255",
                            "--rounds", str(a.rounds), "--threads", str(th), "--out", model, "--json", js],
                           check=True, stdout=subprocess.DEVNULL)
            fr[f"train_s_{th}t"] = json.load(open(js))["train_seconds"]
        out = os.path.join(tmp, "pred.txt")
        subprocess.run([a.funnel, "gbdt", "predict", "--model", model, *pargs, "--raw", "--out", out], check=True)
        fr.update(quality(np.loadtxt(out)))
        js = os.path.join(tmp, "bench.json")
        subprocess.run([a.funnel, "gbdt", "bench", "--model", model, *pargs, "--json", js], check=True, stdout=subprocess.DEVNULL)
        b = json.load(open(js))
        fr["rows_s_batch1"], fr["rows_s_batch1000"] = b["rows_per_second_batch1"], b["rows_per_second_batch1000"]
        fr["model_bytes"] = os.path.getsize(model)
        results["Funnel"] = fr

        # LightGBM
        lr = {}
        params = dict(objective="lambdarank" if task == "lambdarank" else "binary", verbose=-1, **common)
        for th in (1, a.threads):
            t = time.perf_counter()
            ds = lgb.Dataset(Xtr, ytr, group=gtr, weight=wtr)
            booster = lgb.train(dict(params, num_threads=th), ds, a.rounds)
            lr[f"train_s_{th}t"] = time.perf_counter() - t
        lr.update(quality(booster.predict(Xte, raw_score=True, num_threads=1)))
        lr["rows_s_batch1"], lr["rows_s_batch1000"] = time_predict(lambda x: booster.predict(x, num_threads=1), Xte)
        mp = os.path.join(tmp, "lgb.txt")
        booster.save_model(mp)
        lr["model_bytes"] = os.path.getsize(mp)
        results["LightGBM"] = lr

        # XGBoost, matched settings (leaf-wise with max_leaves, hist)
        xr = {}
        xp = dict(objective="rank:ndcg" if task == "lambdarank" else "binary:logistic", tree_method="hist",
                  grow_policy="lossguide", max_leaves=31, max_depth=0, eta=0.1, min_child_weight=5, max_bin=255)
        for th in (1, a.threads):
            t = time.perf_counter()
            dm = xgb.DMatrix(Xtr, ytr, weight=wtr)
            if gtr:
                dm.set_group(gtr)
            bst = xgb.train(dict(xp, nthread=th), dm, a.rounds)
            xr[f"train_s_{th}t"] = time.perf_counter() - t
        bst.set_param({"nthread": 1})
        xr.update(quality(bst.predict(xgb.DMatrix(Xte), output_margin=True)))
        xr["rows_s_batch1"], xr["rows_s_batch1000"] = time_predict(lambda x: bst.inplace_predict(x), Xte)
        mp = os.path.join(tmp, "xgb.json")
        bst.save_model(mp)
        xr["model_bytes"] = os.path.getsize(mp)
        results["XGBoost"] = xr

        keys = list(fr.keys())
        print(f"\n{task}: {len(Xtr)} train rows, {len(Xte)} test rows, {Xtr.shape[1]} features")
        print(f"{'':<22}" + "".join(f"{e:>14}" for e in results))
        for k in keys:
            print(f"{k:<22}" + "".join(f"{results[e][k]:>14.4f}" if isinstance(results[e][k], float) else f"{results[e][k]:>14}" for e in results))
        f, l = results["Funnel"], results["LightGBM"]
        print("Funnel vs LightGBM: "
              + (f"NDCG@10 {f['ndcg@10'] - l['ndcg@10']:+.4f}, " if task == "lambdarank" else f"AUC {f['auc'] - l['auc']:+.4f}, ")
              + f"train time 1 thread {f['train_s_1t'] / l['train_s_1t']:.2f}x LightGBM's, "
              + f"predict batch 1 {f['rows_s_batch1'] / l['rows_s_batch1']:.1f}x, batch 1000 {f['rows_s_batch1000'] / l['rows_s_batch1000']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
