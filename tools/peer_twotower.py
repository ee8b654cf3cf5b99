#!/usr/bin/env python3
"""Retrieval peers next to Funnel's towers, on Funnel's split, each tuned on validation
with the same small effort.

Data: ml-100k (`--movielens DIR`) or any catalog folder Funnel trains on (`--csv DIR`:
interactions.csv, items.csv, users.csv and schema.json, as `funnel generate catalog`
writes them). The split is Funnel's (per user by (timestamp, item index); last = test,
second-to-last = validation); popularity's test figure is printed to check it.

Candidates, each with its grid searched on validation NDCG@10 and the best tested:
- PyTorch two-tower, written the way a PyTorch user would: the schema's features
  (categoricals and multi-valued columns as embedding bags, numeric buckets, standardized
  numerics, log-day age buckets, hashed title words), concatenated -> 128 ReLU -> 64,
  L2-normalized; in-batch softmax at temperature 0.05 with logQ from the item counts and
  accidental hits masked; Adam on every parameter (embeddings included); batch 1024;
  up to 30 epochs, the best validation epoch kept (stop after 5 without improvement).
  Grid: id width {32, 64} x learning rate {1e-3, 3e-3} x id dropout {0, 0.1}.
- implicit's ALS (64 factors, 15 iterations): regularization {0.1, 1, 10} x alpha {1, 10, 40}.
- implicit's BPR (64 factors, 100 iterations): learning rate {0.01, 0.05} x regularization {0.001, 0.01}.

    python tools/peer_twotower.py --movielens ../shared/data/ml-100k [--threads 1] [--funnel-json F] [--json OUT]
    python tools/peer_twotower.py --csv /tmp/catalog [--only-speed]
"""
import argparse
import csv
import json
import math
import os
import time

import numpy as np


# ---------------------------------------------------------------- data

class Catalog:
    """Interactions as index arrays, and per side a list of feature columns:
    ("bag", codes list per entity, vocab) or ("dense", float array)."""

    def __init__(self):
        self.users, self.items, self.times = None, None, None
        self.nu = self.ni = 0
        self.user_fields, self.item_fields = [], []


def quantile_codes(x, n):
    """Funnel's numeric buckets: code = #edges <= x, + 1; NaN -> 0."""
    present = np.sort(x[~np.isnan(x)])
    if len(present) == 0:
        return [[0] for _ in x], n + 1
    edges = [present[min(len(present) - 1, k * len(present) // n)] for k in range(1, n)]
    return [[0] if np.isnan(v) else [int(sum(v >= e for e in edges)) + 1] for v in x], n + 1


def fnv1a(s):
    h = 1469598103934665603
    for b in s.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def load_movielens(d):
    c = Catalog()
    data = np.loadtxt(f"{d}/u.data", dtype=np.int64)
    users = [l.rstrip("\n").split("|") for l in open(f"{d}/u.user", encoding="latin-1") if l.strip()]
    items = [l.rstrip("\n").split("|") for l in open(f"{d}/u.item", encoding="latin-1") if l.strip()]
    uid = {u[0]: i for i, u in enumerate(users)}
    iid = {it[0]: i for i, it in enumerate(items)}
    c.users = np.array([uid[str(x)] for x in data[:, 0]])
    c.items = np.array([iid[str(x)] for x in data[:, 1]])
    c.times = data[:, 3]
    c.nu, c.ni = len(users), len(items)
    age, av = quantile_codes(np.array([float(x[1]) for x in users]), 8)
    def cat(vals):
        voc = {v: k + 1 for k, v in enumerate(sorted(set(vals)))}
        return [[voc[v]] for v in vals], len(voc) + 1
    c.user_fields = [("bag",) + cat([x[2] for x in users]), ("bag",) + cat([x[3] for x in users]), ("bag", age, av)]
    years = np.array([float(x[2][-4:]) if x[2] else np.nan for x in items])
    year, yv = quantile_codes(years, 10)
    genres = [[k + 1 for k, f in enumerate(x[5:]) if f == "1"] or [0] for x in items]
    c.item_fields = [("bag", genres, 20), ("bag", year, yv)]
    return c


def load_csv(d):
    schema = json.load(open(f"{d}/schema.json"))
    ic = schema.get("interactions", {})
    ucol, icol, tcol = ic.get("user", "user_id"), ic.get("item", "item_id"), ic.get("timestamp", "timestamp")
    c = Catalog()
    uid, iid = {}, {}
    us, its, ts = [], [], []
    with open(f"{d}/interactions.csv", newline="") as f:
        for row in csv.DictReader(f):
            us.append(uid.setdefault(row[ucol], len(uid)))
            its.append(iid.setdefault(row[icol], len(iid)))
            ts.append(int(float(row[tcol])))
    c.users, c.items, c.times = np.array(us), np.array(its), np.array(ts)
    now = int(c.times.max())

    def side(name, ids):
        spec = schema.get(name)
        path = f"{d}/{name}.csv"
        if not spec or not os.path.exists(path):
            return []
        rows = {}
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                key = row[spec.get("key", "id")]
                if key not in ids:
                    ids[key] = len(ids)  # described but never touched: part of the catalog
                rows[ids[key]] = row
        n = len(ids)
        fields = []
        for feat in spec.get("features", []):
            col, kind = feat["column"], feat["type"]
            vals = [rows.get(e, {}).get(col, "") for e in range(n)]
            if kind in ("categorical", "multi_categorical"):
                sep = feat.get("separator")
                voc = {}
                codes = []
                for v in vals:
                    parts = [p for p in (v.split(sep) if sep and kind == "multi_categorical" else [v]) if p]
                    codes.append([voc.setdefault(p, len(voc) + 1) for p in parts] or [0])
                fields.append(("bag", codes, len(voc) + 1))
            elif kind == "numeric_buckets":
                x = np.array([float(v) if v else np.nan for v in vals])
                codes, voc = quantile_codes(x, feat.get("buckets", 10))
                fields.append(("bag", codes, voc))
            elif kind == "numeric":
                x = np.array([float(v) if v else np.nan for v in vals])
                m, s = np.nanmean(x), np.nanstd(x) or 1.0
                fields.append(("dense", np.nan_to_num((x - m) / s).astype(np.float32)))
            elif kind == "age":
                nb = feat.get("buckets", 12)
                codes = [[min(nb - 1, int(math.log2(1 + max(0, now - float(v)) / 86400))) + 1] if v else [0] for v in vals]
                fields.append(("bag", codes, nb + 1))
            elif kind == "text":
                nb = feat.get("buckets", 4096)
                codes = []
                for v in vals:
                    words = "".join(ch if ch.isalnum() else " " for ch in v.lower()).split()
                    codes.append([fnv1a(w) % nb + 1 for w in words] or [0])
                fields.append(("bag", codes, nb + 1))
        return fields

    c.user_fields = side("users", uid)
    c.item_fields = side("items", iid)
    c.nu, c.ni = len(uid), len(iid)
    # Fields were built before late ids existed only for those sides; pad none needed:
    # side() adds ids before building, and ids never seen on either side have no rows.
    return c


def split(c):
    per = [[] for _ in range(c.nu)]
    for a, b, t in zip(c.users, c.items, c.times):
        per[a].append((t, b))
    train, valid, test, train_items = [], {}, {}, [set() for _ in range(c.nu)]
    for a, ev in enumerate(per):
        ev.sort()
        if len(ev) >= 3:
            test[a] = ev.pop()[1]
            valid[a] = ev.pop()[1]
        for _, b in ev:
            train.append((a, b))
            train_items[a].add(b)
    return np.array(train), valid, test, train_items


def rank_metrics(score_rows, held, exclude):
    """Full-corpus ranking; the user's excluded items left out; ties against the model.
    score_rows(users) -> scores (len(users) x items)."""
    users = sorted(held)
    hr = ndcg = hr50 = mrr = 0.0
    n = 0
    for s0 in range(0, len(users), 256):
        block = users[s0:s0 + 256]
        S = score_rows(block)
        for r, a in enumerate(block):
            target = held[a]
            ex = exclude(a)
            if target in ex:
                continue
            s = S[r].astype(np.float64).copy()
            s[list(ex)] = -np.inf
            rank = int(np.sum(s >= s[target])) - 1
            n += 1
            hr += rank < 10
            hr50 += rank < 50
            ndcg += 1 / math.log2(rank + 2) if rank < 10 else 0
            mrr += 1 / (rank + 1)
    n = max(n, 1)
    return {"HR@10": hr / n, "NDCG@10": ndcg / n, "HR@50": hr50 / n, "MRR": mrr / n}


# ---------------------------------------------------------------- PyTorch two-tower

def torch_two_tower(c, train, valid, test, train_items, id_width, lr, dropout, threads, max_epochs=30, patience=5,
                    seed=42, log=None):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    def width(v):
        return min(64, max(4, int(round(6 * v ** 0.25))))

    class Tower(nn.Module):
        def __init__(self, n, fields):
            super().__init__()
            self.n = n
            self.id = nn.Embedding(n + 1, id_width)  # row 0: the hidden id
            self.bags, self.bag_data, self.dense = nn.ModuleList(), [], []
            d = id_width
            for f in fields:
                if f[0] == "bag":
                    codes, vocab = f[1], f[2]
                    self.bags.append(nn.Embedding(vocab, width(vocab)))
                    # Padded codes and a mask per entity: a mean over each bag, vectorized.
                    longest = max(len(cs) for cs in codes)
                    padded = np.zeros((len(codes), longest), dtype=np.int64)
                    mask = np.zeros((len(codes), longest), dtype=np.float32)
                    for r, cs in enumerate(codes):
                        padded[r, :len(cs)] = cs
                        mask[r, :len(cs)] = 1 / len(cs)
                    self.bag_data.append((torch.tensor(padded), torch.tensor(mask)))
                    d += width(vocab)
                else:
                    self.dense.append(torch.tensor(f[1]))
                    d += 1
            for m in list(self.bags) + [self.id]:
                nn.init.normal_(m.weight, std=0.05)
            self.mlp = nn.Sequential(nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, 64))

        def forward(self, idx, drop=0.0):
            ids = idx + 1
            if drop > 0:
                ids = torch.where(torch.rand(len(idx)) < drop, torch.zeros_like(ids), ids)
            x = [self.id(ids)]
            for bag, (padded, mask) in zip(self.bags, self.bag_data):
                x.append((bag(padded[idx]) * mask[idx][:, :, None]).sum(1))
            for col in self.dense:
                x.append(col[idx][:, None])
            return F.normalize(self.mlp(torch.cat(x, 1)), dim=1)

    ut, it = Tower(c.nu, c.user_fields), Tower(c.ni, c.item_fields)
    params = list(ut.parameters()) + list(it.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    counts = np.bincount(train[:, 1], minlength=c.ni).astype(np.float64)
    logq_all = torch.tensor(np.log(np.maximum(counts, 0.5) / len(train)), dtype=torch.float32)
    temperature, batch = 0.05, 1024

    def embed():
        with torch.no_grad():
            U = torch.cat([ut(torch.arange(s, min(c.nu, s + 4096))) for s in range(0, c.nu, 4096)]).numpy()
            V = torch.cat([it(torch.arange(s, min(c.ni, s + 4096))) for s in range(0, c.ni, 4096)]).numpy()
        return U, V

    def evaluate(held, exclude):
        U, V = embed()
        return rank_metrics(lambda b: U[b] @ V.T, held, exclude)

    best, best_state, best_epoch, bad = -1.0, None, 0, 0
    seconds, examples = 0.0, 0
    for epoch in range(max_epochs):
        perm = rng.permutation(len(train))
        t0 = time.perf_counter()
        for s in range(0, len(perm), batch):
            rows = train[perm[s:s + batch]]
            bu, bi = torch.tensor(rows[:, 0]), torch.tensor(rows[:, 1])
            logits = ut(bu, dropout) @ it(bi, dropout).T / temperature - logq_all[bi][None, :]
            same = bi[:, None] == bi[None, :]
            logits = logits.masked_fill(same & ~torch.eye(len(rows), dtype=torch.bool), float("-inf"))
            loss = F.cross_entropy(logits, torch.arange(len(rows)))
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds += time.perf_counter() - t0
        examples += len(train)
        v = evaluate(valid, lambda a: train_items[a])
        if log:
            log(f"pytorch epoch {epoch + 1}: validation NDCG@10 {v['NDCG@10']:.4f}")
        if v["NDCG@10"] > best:
            best, best_epoch, bad = v["NDCG@10"], epoch + 1, 0
            best_state = [p.detach().clone() for p in params]
        else:
            bad += 1
            if bad >= patience:
                break
    with torch.no_grad():
        for p, b in zip(params, best_state):
            p.copy_(b)
    res = evaluate(test, lambda a: train_items[a] | {valid[a]})
    return {"validation_NDCG@10": best, "best_epoch": best_epoch, "epochs": epoch + 1, "test": res,
            "examples_per_second": examples / seconds, "seconds": seconds}


# ---------------------------------------------------------------- implicit

def counts_matrix(train, nu, ni):
    import scipy.sparse as sp
    m = sp.csr_matrix((np.ones(len(train), dtype=np.float32), (train[:, 0], train[:, 1])), shape=(nu, ni))
    m.sum_duplicates()
    return m


def implicit_model(kind, params, train, valid, test, train_items, nu, ni, threads, seed=42):
    if kind == "als":
        from implicit.als import AlternatingLeastSquares as M
        model = M(factors=64, iterations=15, random_state=seed, num_threads=threads, **params)
    else:
        from implicit.bpr import BayesianPersonalizedRanking as M
        model = M(factors=64, iterations=100, random_state=seed, num_threads=threads, **params)
    t0 = time.perf_counter()
    model.fit(counts_matrix(train, nu, ni), show_progress=False)
    secs = time.perf_counter() - t0
    U, V = np.asarray(model.user_factors), np.asarray(model.item_factors)
    v = rank_metrics(lambda b: U[b] @ V.T, valid, lambda a: train_items[a])
    t = rank_metrics(lambda b: U[b] @ V.T, test, lambda a: train_items[a] | {valid[a]})
    return {"validation_NDCG@10": v["NDCG@10"], "test": t, "seconds": secs}


# ---------------------------------------------------------------- main

def grid_search(name, grid, run):
    rows = []
    for g in grid:
        r = run(g)
        r["params"] = g
        rows.append(r)
        print(f"  {name} {g}: validation NDCG@10 {r['validation_NDCG@10']:.4f}"
              + (f" (best epoch {r['best_epoch']} of {r['epochs']})" if "best_epoch" in r else "")
              + f", {r['seconds']:.1f} s", flush=True)
    best = max(rows, key=lambda r: r["validation_NDCG@10"])
    return best, rows


def main():
    ap = argparse.ArgumentParser()
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--movielens")
    src.add_argument("--csv")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--funnel-json", nargs="+", help="`funnel train --json` outputs: the tuned run first, then its chosen settings retrained with other seeds")
    ap.add_argument("--seeds", type=int, default=3, help="each candidate's chosen settings are trained with this many seeds (42, 43, ...) and tested; mean and sd reported")
    ap.add_argument("--json", help="write every candidate's grid and result here")
    ap.add_argument("--only-speed", action="store_true", help="one PyTorch configuration (64-d ids, 3e-3, dropout 0.1), up to 20 epochs: the speed yardstick (Funnel: --no-tune --id-width 64 --id-dropout 0.1)")
    ap.add_argument("--no-implicit", action="store_true")
    args = ap.parse_args()
    t_start = time.perf_counter()
    c = load_movielens(args.movielens) if args.movielens else load_csv(args.csv)
    train, valid, test, train_items = split(c)
    label = args.movielens or args.csv
    print(f"{label}: {len(c.users)} interactions, {c.nu} users, {c.ni} items; {len(train)} train, {len(valid)} validation, {len(test)} test")
    counts = np.bincount(train[:, 1], minlength=c.ni).astype(np.float32)
    pop = rank_metrics(lambda b: np.tile(counts, (len(b), 1)), test, lambda a: train_items[a] | {valid[a]})
    print(f"popularity: test HR@10 {pop['HR@10']:.4f} NDCG@10 {pop['NDCG@10']:.4f} (must match Funnel's: same split)")
    out = {"data": label, "threads": args.threads, "popularity": pop, "candidates": {}}
    try:
        import torch
        out["versions"] = {"torch": torch.__version__, "numpy": np.__version__}
        out["versions"]["torch_blas"] = "MKL" if torch.backends.mkl.is_available() else "other"
        out["versions"]["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except Exception:
        pass

    if args.only_speed:
        r = torch_two_tower(c, train, valid, test, train_items, 64, 3e-3, 0.1, args.threads, max_epochs=20, patience=3)
        print(f"pytorch ({args.threads} thread{'s' if args.threads > 1 else ''}): test HR@10 {r['test']['HR@10']:.4f} "
              f"NDCG@10 {r['test']['NDCG@10']:.4f}; {r['examples_per_second']:.0f} training examples/s")
        out["candidates"]["pytorch"] = r
    else:
        grid = [{"id_width": w, "lr": lr, "id_dropout": dr} for w in (32, 64) for lr in (1e-3, 3e-3) for dr in (0.0, 0.1)]
        t0 = time.perf_counter()
        best, rows = grid_search("pytorch", grid, lambda g: torch_two_tower(c, train, valid, test, train_items, g["id_width"], g["lr"],
                                                                             g["id_dropout"], args.threads))
        search_seconds = time.perf_counter() - t0
        reruns = [best["test"]] + [torch_two_tower(c, train, valid, test, train_items, best["params"]["id_width"], best["params"]["lr"],
                                                   best["params"]["id_dropout"], args.threads, seed=42 + k)["test"] for k in range(1, args.seeds)]
        out["candidates"]["pytorch two-tower"] = {"chosen": best, "grid": rows, "search_seconds": search_seconds, "seeds": reruns}
        if not args.no_implicit:
            for kind, grid in [("als", [{"regularization": r, "alpha": a} for r in (0.1, 1.0, 10.0) for a in (1.0, 10.0, 40.0)]),
                               ("bpr", [{"learning_rate": lr, "regularization": r} for lr in (0.01, 0.05) for r in (0.001, 0.01)])]:
                t0 = time.perf_counter()
                best, rows = grid_search(kind, grid, lambda g: implicit_model(kind, g, train, valid, test, train_items, c.nu, c.ni, args.threads))
                search_seconds = time.perf_counter() - t0
                reruns = [best["test"]] + [implicit_model(kind, best["params"], train, valid, test, train_items, c.nu, c.ni, args.threads,
                                                          seed=42 + k)["test"] for k in range(1, args.seeds)]
                out["candidates"][f"implicit {kind.upper()}"] = {"chosen": best, "grid": rows, "search_seconds": search_seconds, "seeds": reruns}
        try:
            import implicit
            out.setdefault("versions", {})["implicit"] = implicit.__version__
        except Exception:
            pass

    funnels = [json.load(open(f)) for f in args.funnel_json] if args.funnel_json else []
    funnel = funnels[0] if funnels else None

    def stats(runs):
        hr, nd = np.array([r["HR@10"] for r in runs]), np.array([r["NDCG@10"] for r in runs])
        sd = lambda x: x.std(ddof=1) if len(x) > 1 else 0.0
        return f"{hr.mean():>8.4f} ±{sd(hr):.4f}{nd.mean():>9.4f} ±{sd(nd):.4f}{len(runs):>6}"

    print()
    print(f"{'test (same split)':<22}{'HR@10':>8}{'':>8}{'NDCG@10':>9}{'':>8}{'seeds':>6}  chosen on validation")
    summary = {}
    if funnel:
        tuning = funnel.get("tuning", [])
        chosen = next((t for t in tuning if t.get("chosen")), None)
        desc = (f"id dropout {chosen['id_dropout']:g}, id width {chosen.get('id_width', 'rule')}, {chosen['embedding_optimizer']} "
                f"{chosen['embedding_learning_rate']:g}, temperature {chosen['temperature']:g} ({len(tuning)} trials)") if chosen else "one configuration (--no-tune)"
        print(f"{'funnel two-tower':<22}{stats(funnels)}  {desc}")
        summary["funnel two-tower"] = [{"HR@10": f["HR@10"], "NDCG@10": f["NDCG@10"]} for f in funnels]
    for name, r in out["candidates"].items():
        best = r.get("chosen", r)
        runs = r.get("seeds", [best["test"]])
        print(f"{name:<22}{stats(runs)}  {best.get('params', '')}")
        summary[name] = runs
    if funnel and funnel.get("baselines", {}).get("als"):
        m = funnel["baselines"]["als"]
        print(f"{'funnel ALS (LAPACKE)':<22}{stats([m])}")
    print(f"{'popularity':<22}{stats([pop])}")
    out["summary"] = summary
    if funnel and "pytorch two-tower" in out["candidates"]:
        s = out["candidates"]["pytorch two-tower"]["search_seconds"]
        fs = funnel["training"]["wall_seconds"]
        print(f"search time (seed 42): funnel {fs:.1f} s (towers, every trial), pytorch grid {s:.1f} s: {fs / s:.2f}x")
    out["seconds"] = time.perf_counter() - t_start
    if args.json:
        json.dump(out, open(args.json, "w"), indent=1, default=str)


if __name__ == "__main__":
    main()
