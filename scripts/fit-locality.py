#!/usr/bin/env python3
"""fit-locality.py: the joint input fit of issue 7 -- one global locality key (workload.noise, the
per-token i.i.d. share of each query and key: the query part is what makes the survivors of
adjacent queries differ) to the paper's "on average 2.1% of the sequence length is newly fetched
between adjacent queries" (section 2.4), together with each preset's temperature to its Fig. 10 S
SPRINT traffic (as scripts/fit-density.py). Never fitted to a speedup or energy bar.

For each noise value on a coarse grid, every preset's temperature is bisected (in log) to its
Fig. 10 S traffic; the noise whose mean new-keys-per-query share over the 8 presets is nearest
2.1% (linear interpolation between grid points, then one confirming refit) is printed with the
temperatures to paste into include/sprint/keys_hardware.def.

Usage: scripts/fit-locality.py [build/sprint] [--heads N] [--grid a,b,c]
Cost is kept small for the shared machine: S size only, N heads (default 4), 6 bisection steps.
Tried in docs/RESULTS.md 7.2 ("The joint locality fit"): noise 0.32 hits the 2.1% but moves no
issue-7 target, so its output is not in the built-in defaults."""
import json, math, subprocess, sys

FIG10_S = {"BERT-B": 97.9, "BERT-L": 98.8, "ALBERT-XL": 97.9, "ALBERT-XXL": 98.4, "ViT-B": 72.9,
           "GPT-2-L": 97.5, "Synth-1": 96.6, "Synth-2": 96.2}
KEY = {"BERT-B": "bert_b", "BERT-L": "bert_l", "ALBERT-XL": "albert_xl", "ALBERT-XXL": "albert_xxl",
       "ViT-B": "vit_b", "GPT-2-L": "gpt2_l", "Synth-1": "synth1", "Synth-2": "synth2"}
NEW_KEYS = 2.1  # % of the sequence newly fetched per adjacent query (paper section 2.4, an average)


def run(sprint, heads, preset, temp, noise):
    out = subprocess.run([sprint, "run", "--no-real", "--json", "--quiet", "--sizes", "S", "--workload", preset,
                          "--set", "workload.sim_heads=%d" % heads, "--set", "workload.noise=%g" % noise,
                          "--set", "workload.%s_temperature=%g" % (KEY[preset], temp)],
                         check=True, capture_output=True, text=True).stdout
    j = json.loads(out)
    for r in j["results"]:
        if r["design"] == "sprint" and r["baseline"] == "paper":
            return 100.0 * r["traffic_left_vs_s_baseline"], 100.0 * j["workloads"][0]["new_fetch_fraction"]
    raise SystemExit("no sprint result for %s" % preset)


def fit_temps(sprint, heads, noise, start):
    temps, new = {}, {}
    for p in FIG10_S:
        target = 100.0 - FIG10_S[p]
        lo, hi = start[p] * 0.6, start[p] * 2.2  # higher temperature = fewer survivors = less traffic
        for _ in range(6):
            mid = math.sqrt(lo * hi)
            if run(sprint, heads, p, mid, noise)[0] > target:
                lo = mid
            else:
                hi = mid
        temps[p] = round(math.sqrt(lo * hi), 3)
        left, new[p] = run(sprint, heads, p, temps[p], noise)
        print("  noise %.3f %-11s temperature %.3f: traffic left %.2f%% (Fig. 10 %.1f%%), new keys %.2f%%" %
              (noise, p, temps[p], left, target, new[p]), flush=True)
    mean = sum(new.values()) / len(new)
    print("noise %.3f: mean new keys per adjacent query %.2f%% (paper %.1f%%)" % (noise, mean, NEW_KEYS), flush=True)
    return temps, mean


def main():
    args = sys.argv[1:]
    sprint = args.pop(0) if args and "/" in args[0] else "build/sprint"
    heads, grid = 4, [0.5, 0.25, 0.12]
    while args:
        a = args.pop(0)
        if a == "--heads":
            heads = int(args.pop(0))
        elif a == "--grid":
            grid = [float(x) for x in args.pop(0).split(",")]
        else:
            raise SystemExit("unknown argument %s" % a)
    start = {"BERT-B": 3.289, "BERT-L": 3.544, "ALBERT-XL": 4.804, "ALBERT-XXL": 3.747, "ViT-B": 3.130,
             "GPT-2-L": 4.349, "Synth-1": 4.296, "Synth-2": 4.243}
    pts = []
    for nz in grid:
        temps, mean = fit_temps(sprint, heads, nz, start)
        pts.append((nz, mean, temps))
        start = temps
    pts.sort()
    best = min(pts, key=lambda x: abs(x[1] - NEW_KEYS))
    for (a, ma, _), (b, mb, _) in zip(pts, pts[1:]):
        if (ma - NEW_KEYS) * (mb - NEW_KEYS) <= 0 and ma != mb:
            nz = round(a + (NEW_KEYS - ma) * (b - a) / (mb - ma), 3)
            temps, mean = fit_temps(sprint, heads, nz, best[2])
            best = (nz, mean, temps)
            break
    nz, mean, temps = best
    print("\nfitted: workload.noise = %.3f (mean new keys %.2f%%)" % (nz, mean))
    for p in FIG10_S:
        print("workload.%s_temperature = %.3f" % (KEY[p], temps[p]))


if __name__ == "__main__":
    main()
