#!/usr/bin/env python3
"""The PyTorch two-tower of PROTOCOLS.md section 2, next to Funnel's, on the same split.

Same features as `funnel train` (user id, age in 8 quantile buckets, gender, occupation;
item id, genres mean-pooled, release year in 10 quantile buckets; embedding widths by the
fourth-root rule), same towers (concatenated embeddings -> 128 ReLU -> 64, L2-normalized),
same loss (in-batch softmax, temperature 0.05, logQ correction from a streaming frequency
estimate, accidental hits masked), id dropout 0.1, Adam, batch 1024, early stopping on
validation NDCG@10 (patience 3). Leave-last-one-out split, full-corpus ranking without the
user's earlier items, ties against the model.

With --implicit, also implicit-feedback ALS from the `implicit` library (64 factors, 15
iterations, confidence 1 + alpha * count), regularization x alpha tuned on validation NDCG@10
over the grid Funnel's `train --als-grid` uses, tested like the towers.

    python tools/peer_twotower.py ../shared/data/ml-100k [--threads 1] [--funnel-json F] [--implicit]
"""
import argparse
import json
import math
import time

import numpy as np


def load(d):
    data = np.loadtxt(f"{d}/u.data", dtype=np.int64)
    users = [l.rstrip("\n").split("|") for l in open(f"{d}/u.user", encoding="latin-1") if l.strip()]
    items = [l.rstrip("\n").split("|") for l in open(f"{d}/u.item", encoding="latin-1") if l.strip()]
    uid = {u[0]: i for i, u in enumerate(users)}
    iid = {it[0]: i for i, it in enumerate(items)}
    u = np.array([uid[str(x)] for x in data[:, 0]])
    i = np.array([iid[str(x)] for x in data[:, 1]])
    return u, i, data[:, 3], users, items


def buckets(x, n):
    """Quantile buckets as Funnel's numericBuckets: code = #edges <= x, + 1; NaN -> 0."""
    present = np.sort(x[~np.isnan(x)])
    edges = [present[min(len(present) - 1, k * len(present) // n)] for k in range(1, n)]
    codes = np.zeros(len(x), dtype=np.int64)
    for r, v in enumerate(x):
        codes[r] = 0 if np.isnan(v) else sum(v >= e for e in edges) + 1
    return codes, n + 1


def width(vocab):
    return min(64, max(4, int(round(6 * vocab ** 0.25))))


def rank_metrics(U, V, held, exclude):
    """Full-corpus ranking of each held-out item without the user's excluded items; ties
    count against the model."""
    S = U @ V.T
    hr = ndcg = hr50 = mrr = 0.0
    for a, target in held.items():
        s = S[a].copy()
        s[list(exclude(a))] = -np.inf
        rank = int(np.sum(s >= s[target])) - 1
        hr += rank < 10
        hr50 += rank < 50
        ndcg += 1 / math.log2(rank + 2) if rank < 10 else 0
        mrr += 1 / (rank + 1)
    n = len(held)
    return {"HR@10": hr / n, "NDCG@10": ndcg / n, "HR@50": hr50 / n, "MRR": mrr / n}


def split(u, i, t, n_users):
    per = [[] for _ in range(n_users)]
    for a, b, c in zip(u, i, t):
        per[a].append((c, b))
    train, valid, test, train_items = [], {}, {}, [set() for _ in range(n_users)]
    for a, ev in enumerate(per):
        ev.sort()
        if len(ev) >= 3:
            test[a] = ev.pop()[1]
            valid[a] = ev.pop()[1]
        for _, b in ev:
            train.append((a, b))
            train_items[a].add(b)
    return np.array(train), valid, test, train_items


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--funnel-json")
    ap.add_argument("--implicit", action="store_true")
    args = ap.parse_args()
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    np.random.seed(42)
    u, i, t, users, items = load(args.data)
    nu, ni = len(users), len(items)
    age, age_vocab = buckets(np.array([float(x[1]) for x in users]), 8)
    genders = {g: k + 1 for k, g in enumerate(sorted({x[2] for x in users}))}
    occs = {o: k + 1 for k, o in enumerate(sorted({x[3] for x in users}))}
    gender = np.array([genders[x[2]] for x in users])
    occ = np.array([occs[x[3]] for x in users])
    years = np.array([float(x[2][-4:]) if x[2] else np.nan for x in items])
    year, year_vocab = buckets(years, 10)
    genre_flags = np.array([[int(f) for f in x[5:]] for x in items])  # 19 flags
    ng = genre_flags.shape[1]
    train, valid, test, train_items = split(u, i, t, nu)

    class Tower(nn.Module):
        def __init__(self, fields, multi=None):
            super().__init__()
            self.emb = nn.ModuleList([nn.Embedding(v, width(v)) for v in fields])
            self.multi = nn.EmbeddingBag(multi, width(multi), mode="mean") if multi else None
            d = sum(width(v) for v in fields) + (width(multi) if multi else 0)
            for e in self.emb:
                nn.init.normal_(e.weight, std=0.05)
            if self.multi is not None:
                nn.init.normal_(self.multi.weight, std=0.05)
            self.mlp = nn.Sequential(nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, 64))

        def forward(self, codes, bag=None):
            x = [e(c) for e, c in zip(self.emb, codes)]
            if self.multi is not None:
                x.append(self.multi(*bag))
            return F.normalize(self.mlp(torch.cat(x, 1)), dim=1)

    user_tower = Tower([nu + 1, age_vocab, len(genders) + 1, len(occs) + 1])
    item_tower = Tower([ni + 1, year_vocab], multi=ng + 1)
    u_codes = [torch.arange(1, nu + 1), torch.tensor(age), torch.tensor(gender), torch.tensor(occ)]
    i_codes = [torch.arange(1, ni + 1), torch.tensor(year)]
    # Genres as a bag per item (code g + 1; an item with none gets the unknown code 0).
    bag_vals, bag_offs = [], []
    for r in range(ni):
        bag_offs.append(len(bag_vals))
        g = [k + 1 for k in np.nonzero(genre_flags[r])[0]] or [0]
        bag_vals.extend(g)

    def item_bag(idx):
        idx = idx.tolist()
        vals, offs = [], []
        for r in idx:
            offs.append(len(vals))
            s, e = bag_offs[r], bag_offs[r + 1] if r + 1 < ni else len(bag_vals)
            vals.extend(bag_vals[s:e])
        return torch.tensor(vals), torch.tensor(offs)

    def users_fwd(idx, drop=0.0):
        c = [x[idx] for x in u_codes]
        if drop > 0:
            c[0] = torch.where(torch.rand(len(idx)) < drop, torch.zeros_like(c[0]), c[0])
        return user_tower(c)

    def items_fwd(idx, drop=0.0):
        c = [x[idx] for x in i_codes]
        if drop > 0:
            c[0] = torch.where(torch.rand(len(idx)) < drop, torch.zeros_like(c[0]), c[0])
        return item_tower(c, item_bag(idx))

    params = list(user_tower.parameters()) + list(item_tower.parameters())
    opt = torch.optim.Adam(params, lr=0.003)
    temperature, batch = 0.05, 1024
    last_seen = np.full(ni, -1.0)
    gap = np.full(ni, 100.0)

    def evaluate(held, exclude):
        with torch.no_grad():
            U = users_fwd(torch.arange(nu)).numpy()
            V = items_fwd(torch.arange(ni)).numpy()
        return rank_metrics(U, V, held, exclude)

    best, best_state, bad, step = -1.0, None, 0, 0
    train_seconds, examples = 0.0, 0
    for epoch in range(args.epochs):
        perm = np.random.permutation(len(train))
        t0 = time.perf_counter()
        for s in range(0, len(perm), batch):
            rows = train[perm[s:s + batch]]
            bu, bi = torch.tensor(rows[:, 0]), torch.tensor(rows[:, 1])
            step += 1
            logq = np.empty(len(rows))
            for j, item in enumerate(rows[:, 1]):
                if last_seen[item] >= 0:
                    gap[item] = 0.9 * gap[item] + 0.1 * (step - last_seen[item])
                last_seen[item] = step
                logq[j] = math.log(1 / max(gap[item], 1))
            uv, iv = users_fwd(bu, 0.1), items_fwd(bi, 0.1)
            logits = uv @ iv.T / temperature - torch.tensor(logq, dtype=torch.float32)[None, :]
            same = bi[:, None] == bi[None, :]
            logits = logits.masked_fill(same & ~torch.eye(len(rows), dtype=torch.bool), float("-inf"))
            loss = F.cross_entropy(logits, torch.arange(len(rows)))
            opt.zero_grad()
            loss.backward()
            opt.step()
        train_seconds += time.perf_counter() - t0
        examples += len(train)
        v = evaluate(valid, lambda a: train_items[a])
        print(f"pytorch epoch {epoch + 1}: loss {loss.item():.4f}, validation NDCG@10 {v['NDCG@10']:.4f}, "
              f"{examples / train_seconds:.0f} examples/s")
        if v["NDCG@10"] > best:
            best, bad = v["NDCG@10"], 0
            best_state = ([p.detach().clone() for p in params])
        else:
            bad += 1
            if bad >= 3:
                break
    with torch.no_grad():
        for p, b in zip(params, best_state):
            p.copy_(b)
    res = evaluate(test, lambda a: train_items[a] | {valid[a]})
    eps = examples / train_seconds
    print(f"pytorch ({args.threads} thread{'s' if args.threads > 1 else ''}): test HR@10 {res['HR@10']:.4f} NDCG@10 {res['NDCG@10']:.4f} "
          f"HR@50 {res['HR@50']:.4f} MRR {res['MRR']:.4f}; {eps:.0f} training examples/s")
    als = None
    if args.implicit:
        als = implicit_als(train, valid, test, train_items, nu, ni, args.threads)
    if args.funnel_json:
        f = json.load(open(args.funnel_json))
        fe = f["training"]["examples_per_second"]
        print(f"{'':<26}{'HR@10':>8}{'NDCG@10':>9}{'examples/s':>12}")
        print(f"{'funnel two-tower':<26}{f['HR@10']:>8.4f}{f['NDCG@10']:>9.4f}{fe:>12.0f}")
        print(f"{'pytorch two-tower':<26}{res['HR@10']:>8.4f}{res['NDCG@10']:>9.4f}{eps:>12.0f}")
        for name, m in [("funnel ALS (LAPACKE)", f.get("baselines", {}).get("als")), ("implicit ALS", als),
                        ("popularity", f.get("baselines", {}).get("popularity"))]:
            if m:
                print(f"{name:<26}{m['HR@10']:>8.4f}{m['NDCG@10']:>9.4f}{'':>12}")
        print(f"funnel / pytorch training speed: {fe / eps:.2f}x")


def implicit_als(train, valid, test, train_items, nu, ni, threads):
    """implicit's ALS on the training pairs; grid on validation, metrics on test."""
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares

    counts = sp.csr_matrix((np.ones(len(train), dtype=np.float32), (train[:, 0], train[:, 1])), shape=(nu, ni))
    counts.sum_duplicates()

    best = None
    for reg, alpha in [(1, 10), (10, 10), (1, 40), (10, 40)]:
        model = AlternatingLeastSquares(factors=64, regularization=reg, alpha=alpha, iterations=15,
                                        random_state=42, num_threads=threads)
        t0 = time.perf_counter()
        model.fit(counts, show_progress=False)
        secs = time.perf_counter() - t0
        U, V = np.asarray(model.user_factors), np.asarray(model.item_factors)
        v = rank_metrics(U, V, valid, lambda a: train_items[a])
        if best is None or v["NDCG@10"] > best[0]:
            best = (v["NDCG@10"], U, V, reg, alpha, secs)
    _, U, V, reg, alpha, secs = best
    res = rank_metrics(U, V, test, lambda a: train_items[a] | {valid[a]})
    print(f"implicit ALS (64 factors, reg {reg}, alpha {alpha}, tuned on validation): test HR@10 {res['HR@10']:.4f} "
          f"NDCG@10 {res['NDCG@10']:.4f} HR@50 {res['HR@50']:.4f} MRR {res['MRR']:.4f}; fit {secs:.1f} s")
    return res


if __name__ == "__main__":
    main()
