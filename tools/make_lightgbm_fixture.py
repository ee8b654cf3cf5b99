#!/usr/bin/env python3
"""Writes the LightGBM fixture the GBDT tests check Funnel's model.txt import against:
a small binary model trained by LightGBM on generated data with missing values (NaN)
and exact zeros, the rows it was evaluated on, and LightGBM's own predictions.

Usage: tools/.venv/bin/python tools/make_lightgbm_fixture.py   (needs lightgbm)
Writes Tests/GBDTTests/Fixtures/lgb_{nan,zero}.{model.txt,rows.tsv,pred.txt}.
"""
import os
import numpy as np
import lightgbm as lgb

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests/GBDTTests/Fixtures")
rng = np.random.default_rng(42)
n, d = 2000, 6
X = rng.normal(size=(n, d)).astype(np.float32)
X[rng.random((n, d)) < 0.15] = np.nan
X[:, 2][rng.random(n) < 0.3] = 0.0
y = ((np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, 1], nan=1.0) - np.isnan(X[:, 3]) + 0.3 * rng.normal(size=n)) > 0).astype(int)
rows = X[:200]
for name, extra in [("nan", {}), ("zero", {"zero_as_missing": True})]:
    params = dict(objective="binary", num_leaves=8, learning_rate=0.2, min_data_in_leaf=20, verbose=-1,
                  num_threads=1, seed=1, deterministic=True, **extra)
    b = lgb.train(params, lgb.Dataset(X, y), 12)
    b.save_model(os.path.join(OUT, f"lgb_{name}.model.txt"))
    np.savetxt(os.path.join(OUT, f"lgb_{name}.rows.tsv"), rows, delimiter="\t", fmt="%.9g")
    np.savetxt(os.path.join(OUT, f"lgb_{name}.pred.txt"), b.predict(rows), fmt="%.17g")
    print("wrote", name)
