"""Data-parallel training over Open MPI, measured: tools/mpi [--interactions N] [--epochs E].

For each data set, `funnel train` runs once as a plain process and once per rank count
under `mpirun --oversubscribe -np P` (same settings, same seed). Reported: wall seconds,
the towers' examples/s (all ranks together) and the bundle's test HR@10 / NDCG@10
(leave-last-one-out, seen items excluded). `funnel gbdt train` on LightGBM's lambdarank
example runs the same way, and its models are compared byte for byte.

On a machine with 2 cores, 2 ranks share the cores one process would have used with
--threads 2: the figures show that the data-parallel path is correct and what its
communication costs, not a speed-up. Never run in CI (minutes to an hour).
"""
import argparse, json, os, platform, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUNNEL = os.path.join(ROOT, ".build", "release", "funnel")
SHARED = os.path.join(ROOT, "..", "shared", "data")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def run(cmd, cwd):
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return time.monotonic() - t0, p.stdout


def launcher(ranks):
    return [] if ranks == 0 else ["mpirun", "--oversubscribe", "-np", str(ranks)]


def towers(label, source, epochs, ranks_list, work):
    rows = []
    for ranks in ranks_list:
        out = os.path.join(work, f"{label}-{ranks}")
        js = out + ".json"
        cmd = launcher(ranks) + [FUNNEL, "train", *source, "--epochs", str(epochs), "--patience", "0", "--no-als", "--no-tune",
                                 "--no-ranker", "--json", js, "--out", out]
        seconds, stdout = run(cmd, work)
        report = json.load(open(js))
        eps = report.get("training", {}).get("examples_per_second")
        rows.append({"data": label, "launch": "plain" if ranks == 0 else f"mpirun -np {ranks}", "wall_s": round(seconds, 1),
                     "examples_per_s": round(eps) if eps else None,
                     "HR@10": round(report["HR@10"], 4), "NDCG@10": round(report["NDCG@10"], 4)})
        print(rows[-1], flush=True)
    return rows


def gbdt(ranks_list, work):
    d = os.path.join(SHARED, "lightgbm_lambdarank")
    if not os.path.exists(os.path.join(d, "rank.train")):
        print("lightgbm_lambdarank not found under ../shared/data: the GBDT part is skipped")
        return []
    rows, models = [], {}
    for ranks in ranks_list:
        model = os.path.join(work, f"gbdt-{ranks}.fgb")
        seconds, _ = run(launcher(ranks) + [FUNNEL, "gbdt", "train", "--train", f"{d}/rank.train", "--query", f"{d}/rank.train.query",
                                            "--rounds", "100", "--out", model], work)
        models[ranks] = open(model, "rb").read()
        rows.append({"data": "lambdarank example (3,005 rows)", "launch": "plain" if ranks == 0 else f"mpirun -np {ranks}",
                     "wall_s": round(seconds, 2), "model_equals_plain": models[ranks] == models[ranks_list[0]]})
        print(rows[-1], flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--interactions", type=int, default=10_000_000, help="size of the generated log")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--ranks", default="0,1,2", help="0 = a plain process")
    ap.add_argument("--out", default=os.path.join(ROOT, "Benchmarks", "results", time.strftime("%Y-%m-%d") + "-mpi.json"))
    a = ap.parse_args()
    ranks_list = [int(r) for r in a.ranks.split(",")]
    work = tempfile.mkdtemp(prefix="funnel-mpi-")
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith("Model name")), platform.processor())
    mpi = subprocess.run(["mpirun", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"machine: {model}, {os.cpu_count()} cores; {mpi}", flush=True)
    rows = gbdt(ranks_list, work)
    ml = os.path.join(SHARED, "ml-100k")
    if os.path.exists(os.path.join(ml, "u.data")):
        rows += towers("ml-100k", ["--movielens", ml], max(a.epochs, 8), ranks_list, work)
    else:
        print("ml-100k not found under ../shared/data: that part is skipped")
    users, items = max(1000, a.interactions // 100), max(500, a.interactions // 500)
    cat = os.path.join(work, "cat")
    run([FUNNEL, "generate", "catalog", "--users", str(users), "--items", str(items), "--interactions", str(a.interactions), "--out", cat], work)
    rows += towers(f"generated ({a.interactions:,} interactions)",
                   ["--interactions", f"{cat}/interactions.csv", "--items", f"{cat}/items.csv", "--users", f"{cat}/users.csv",
                    "--schema", f"{cat}/schema.json"], a.epochs, ranks_list, work)
    json.dump({"machine": model, "cores": os.cpu_count(), "mpi": mpi, "rows": rows}, open(a.out, "w"), indent=1)
    print(f"wrote {a.out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
