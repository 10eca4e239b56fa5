#!/usr/bin/env python3
"""repro-summary.py: the issue-7 targets from `sprint run --json --no-real` (stdin): S/M/L speedup
geomeans over the 8 presets, counts within 25%, S-to-L change, energy at M, traffic left at S.
Usage: build/sprint run --json --no-real --quiet | scripts/repro-summary.py"""
import json, math, sys

PAPER = {  # Fig. 11 speedups S/M/L, energy figure ratio, Fig. 10 SPRINT traffic reduction S/M/L (%)
    "BERT-B": ((8.9, 8.8, 8.6), 17.18, (97.9, 98.8, 99.2)), "BERT-L": ((10.3, 10.0, 9.6), 20.54, (98.8, 99.2, 99.2)),
    "ALBERT-XL": ((7.5, 7.3, 7.1), 17.61, (97.9, 98.8, 99.2)), "ALBERT-XXL": ((9.2, 9.0, 8.5), 19.90, (98.4, 99.2, 99.2)),
    "ViT-B": ((2.8, 2.7, 2.7), 2.10, (72.9, 96.6, 96.6)), "GPT-2-L": ((8.5, 8.4, 8.1), 31.63, (97.5, 98.4, 99.2)),
    "Synth-1": ((8.0, 7.9, 7.7), 29.72, (96.6, 97.5, 98.4)), "Synth-2": ((8.0, 7.9, 7.7), 26.75, (96.2, 97.1, 97.9))}
j = json.load(sys.stdin)
res = {}
for r in j["results"]:
    if r["design"] == "sprint" and r["baseline"] == "paper":
        res[(r["workload"], r["size"])] = r
gm = lambda xs: math.exp(sum(map(math.log, xs)) / len(xs))
within = lambda a, b: abs(a / b - 1) <= 0.25
geo = {}
for i, s in enumerate("SML"):
    sp = [res[(w, s)]["speedup"] for w in PAPER]
    geo[s] = gm(sp)
    n_in = sum(within(res[(w, s)]["speedup"], PAPER[w][0][i]) for w in PAPER)
    print("speedup %s: geomean %.2fx (paper %.2fx, %+.1f%%), %d of 8 within 25%%" %
          (s, geo[s], (7.49, 7.36, 7.13)[i], 100 * (geo[s] / (7.49, 7.36, 7.13)[i] - 1), n_in))
    print("   " + ", ".join("%s %.2f/%.1f" % (w, res[(w, s)]["speedup"], PAPER[w][0][i]) for w in PAPER))
print("S-to-L change of the geomean: %+.1f%% (paper -4.8%%)" % (100 * (geo["L"] / geo["S"] - 1)))
e = [res[(w, "M")]["energy_reduction"] for w in PAPER]
print("energy at M: geomean %.2fx (paper 16.9x), %d of 8 within 25%%" %
      (gm(e), sum(within(res[(w, "M")]["energy_reduction"], PAPER[w][1]) for w in PAPER)))
print("   " + ", ".join("%s %.2f/%.2f" % (w, res[(w, "M")]["energy_reduction"], PAPER[w][1]) for w in PAPER))
for i, s in enumerate("SML"):
    left = {w: 100 * res[(w, s)]["traffic_left_vs_s_baseline"] for w in PAPER}
    n_in = sum(within(left[w], 100 - PAPER[w][2][i]) for w in PAPER)
    print("traffic left %s (%% of the S baseline): %d of 8 within 25%% (%s)" % (s, n_in, "fitted" if s == "S" else "predicted"))
    print("   " + ", ".join("%s %.2f/%.1f" % (w, left[w], 100 - PAPER[w][2][i]) for w in PAPER))
for w in j["workloads"]:
    print("%s: speedup SE S/M/L %s; kept %.1f%%, in-memory kept %.1f%%, new keys per query %.2f%%" % (
        w["workload"], "/".join("%.2f" % w["speedup_se"][s] for s in "SML"), 100 * w["kept_fraction"],
        100 * w["mem_kept_fraction"], 100 * w["new_fetch_fraction"]))
