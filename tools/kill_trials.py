#!/usr/bin/env python3
"""kill -9 at random moments of train, retrain, promote and rollback, then checks the registry.

Each trial starts one command against a registry, kills it with SIGKILL after a random
delay (half the time 0 to 1.2x that command's measured duration, half the time 0.8x to
1.05x, where its files are written; some finish, most do not), then:
  1. `funnel registry list` works (it sweeps what the killed command left);
  2. nothing temporary is left anywhere in the registry (names with .tmp-, .partial-,
     .incoming- markers) and every version folder is one the manifest lists;
  3. production is the version it was before the trial, or the one the killed command
     was making production (a change is all or nothing);
  4. `funnel recommend` answers from production.
Prints a summary; exits 1 on the first violation.
"""
import argparse, json, os, random, re, signal, subprocess, sys, tempfile, time

MARKERS = re.compile(r"\.(tmp|partial|incoming)-\d+-")


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def production(funnel, reg):
    r = run([funnel, "registry", "list", "--registry", reg])
    if r.returncode != 0:
        return None, r
    rows = [l.split() for l in r.stdout.splitlines()]
    rows = [x for x in rows if len(x) >= 3 and x[0] == "shop" and re.fullmatch(r"v\d+", x[1])]
    prod = [x[1] for x in rows if x[2] == "production"]
    versions = [x[1] for x in rows]
    return (prod[0] if prod else None, versions), r


def leftovers(reg, listed):
    bad = []
    for root, dirs, files in os.walk(reg):
        for name in dirs + files:
            if MARKERS.search(name):
                bad.append(os.path.join(root, name))
    shop = os.path.join(reg, "shop")
    if os.path.isdir(shop):
        for name in os.listdir(shop):
            if re.fullmatch(r"v\d+", name) and name not in listed:
                bad.append(os.path.join(shop, name) + " (not in the manifest)")
    return bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funnel", required=True)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    work = a.work or tempfile.mkdtemp(prefix="funnel-kill-")
    cat, reg = os.path.join(work, "cat"), os.path.join(work, "reg")
    f = a.funnel
    assert run([f, "generate", "catalog", "--users", "120", "--items", "300", "--interactions", "5000", "--out", cat]).returncode == 0
    lines = open(os.path.join(cat, "interactions.csv")).read().splitlines()
    new = os.path.join(work, "new.csv")
    open(new, "w").write("\n".join([lines[0]] + lines[-400:]) + "\n")
    train = [f, "train", "--interactions", f"{cat}/interactions.csv", "--items", f"{cat}/items.csv", "--users", f"{cat}/users.csv",
             "--schema", f"{cat}/schema.json", "--name", "shop", "--registry", reg, "--epochs", "1", "--no-als", "--no-tune"]
    retrain = [f, "retrain", "--model", "shop", "--registry", reg, "--interactions", new, "--epochs", "1"]
    for cmd in (train, train):
        r = run(cmd)
        assert r.returncode == 0, r.stdout
    assert run([f, "registry", "promote", "shop", "1", "--registry", reg]).returncode == 0
    assert run([f, "registry", "promote", "shop", "2", "--registry", reg]).returncode == 0

    durations = {}
    for name, cmd in (("train", train), ("retrain", retrain)):
        t = time.time(); r = run(cmd); durations[name] = time.time() - t
        assert r.returncode == 0, (name, r.stdout)
    t = time.time(); run([f, "registry", "promote", "shop", "2", "--registry", reg]); durations["promote"] = time.time() - t
    durations["rollback"] = durations["promote"]
    print("kill-trials: command durations (s):", {k: round(v, 2) for k, v in durations.items()})

    counts = {"killed": 0, "finished": 0, "swept": 0}
    per_op = {}
    for trial in range(1, a.trials + 1):
        (prod_before, versions), _ = production(f, reg)
        op = rng.choice(["train", "retrain", "promote", "promote", "rollback"])
        if op == "train":
            cmd, target = train, None
        elif op == "retrain":
            cmd, target = retrain, None
        elif op == "promote":
            target = rng.choice(versions)
            cmd = [f, "registry", "promote", "shop", target.lstrip("v"), "--registry", reg]
        else:
            cmd, target = [f, "registry", "rollback", "shop", "--registry", reg], "rollback"
        # Half the kills anywhere, half near the end, where the files are written.
        d = durations[op]
        delay = rng.uniform(0, 1.2 * d) if rng.random() < 0.5 else rng.uniform(0.8 * d, 1.05 * d)
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL); counts["killed"] += 1
        else:
            counts["finished"] += 1
        p.wait()
        per_op[op] = per_op.get(op, 0) + 1
        # The next command: list (it sweeps), then the checks.
        state, listed = production(f, reg)
        if state is None:
            print(f"kill-trials: trial {trial} ({op}): registry list failed:\n{listed.stdout}"); sys.exit(1)
        counts["swept"] += listed.stdout.count("left by a killed writer")
        prod_after, versions_after = state
        bad = leftovers(reg, set(versions_after))
        if bad:
            print(f"kill-trials: trial {trial} ({op} after {delay:.2f}s): left behind: {bad}"); sys.exit(1)
        allowed = {prod_before}
        if op == "promote": allowed.add(target)
        if op == "rollback": allowed = None  # any earlier production; checked by serving below
        if allowed is not None and prod_after not in allowed:
            print(f"kill-trials: trial {trial} ({op} {target}): production went from {prod_before} to {prod_after}"); sys.exit(1)
        r = run([f, "recommend", "--model", "shop", "--registry", reg, "--user", "u1", "--k", "5"])
        if r.returncode != 0:
            print(f"kill-trials: trial {trial} ({op} after {delay:.2f}s): recommend failed:\n{r.stdout[-2000:]}"); sys.exit(1)
        if trial % 25 == 0:
            print(f"kill-trials: {trial} trials, {counts}, by command {per_op}", flush=True)
    print(f"kill-trials: passed {a.trials} trials: {counts['killed']} killed mid-command, {counts['finished']} finished first, "
          f"{counts['swept']} leftovers swept by the next command; by command {per_op}")


if __name__ == "__main__":
    main()
