#!/usr/bin/env python3
"""fit-density.py: fits each synthetic preset's temperature (workload.<preset>_temperature) to the
paper's Fig. 10 S-SPRINT main-memory traffic (issue 7 item 6: density from traffic, an input fit,
never to speed or energy). Bisection on log(remaining traffic) in the temperature; prints one
line per preset and the keys to paste into include/sprint/keys_hardware.def.

Usage: scripts/fit-density.py [build/sprint] [--set key=value ...] [PRESET...]
(--set keys are passed to every run, e.g. a sensitivity key such as chip.reuse_share)
Each evaluation is `sprint run --no-real --json --sizes S --workload P` on the current defaults
(workload.sim_heads heads), so refit after changing the generator or the head sample."""
import json, math, subprocess, sys

# Fig. 10, S size: SPRINT traffic reduction (%) relative to the S-Baseline (sprint-paper.md 5.5)
FIG10_S = {"BERT-B": 97.9, "BERT-L": 98.8, "ALBERT-XL": 97.9, "ALBERT-XXL": 98.4, "ViT-B": 72.9,
           "GPT-2-L": 97.5, "Synth-1": 96.6, "Synth-2": 96.2}
KEY = {"BERT-B": "bert_b", "BERT-L": "bert_l", "ALBERT-XL": "albert_xl", "ALBERT-XXL": "albert_xxl",
       "ViT-B": "vit_b", "GPT-2-L": "gpt2_l", "Synth-1": "synth1", "Synth-2": "synth2"}


EXTRA = []


def remaining(sprint, preset, temp):
    out = subprocess.run([sprint, "run", "--no-real", "--json", "--quiet", "--sizes", "S", "--workload", preset,
                          "--set", "workload.%s_temperature=%g" % (KEY[preset], temp)] + EXTRA,
                         check=True, capture_output=True, text=True).stdout
    for r in json.loads(out)["results"]:
        if r["design"] == "sprint" and r["baseline"] == "paper":
            return 100.0 * (1.0 - r["traffic_reduction"])
    raise SystemExit("no sprint result for %s" % preset)


def main():
    args = sys.argv[1:]
    sprint = args.pop(0) if args and "/" in args[0] else "build/sprint"
    while "--set" in args:
        i = args.index("--set")
        EXTRA.extend(["--set", args[i + 1]])
        del args[i:i + 2]
    presets = args or list(FIG10_S)
    for p in presets:
        target = 100.0 - FIG10_S[p]
        lo, hi = 0.5, 12.0  # higher temperature = peakier softmax = fewer survivors = less traffic
        for _ in range(9):
            mid = math.sqrt(lo * hi)
            r = remaining(sprint, p, mid)
            if r > target:
                lo = mid
            else:
                hi = mid
        t = round(math.sqrt(lo * hi), 3)
        print("%-11s temperature %.3f nats: remaining %.2f%% (Fig. 10: %.1f%%)" % (p, t, remaining(sprint, p, t), target),
              flush=True)


if __name__ == "__main__":
    main()
