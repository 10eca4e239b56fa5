#!/usr/bin/env python3
"""mutate-sim.py: deliberate breaks of the simulator mechanisms of issue 7; each is applied to the
source, built in build-mut/ (configure it first: cmake -S . -B build-mut -DCMAKE_BUILD_TYPE=Release),
the named test is run, and the source is restored. Prints CAUGHT / NOT caught per mutation.
Usage: scripts/mutate-sim.py [INDEX...]"""
import subprocess, shutil, sys
M = [
 ("pv scan free", "src/timing/headsim.c", "double pv = sp_sim_pv_cycles(hw, nv);", "double pv = 0 * sp_sim_pv_cycles(hw, nv);", "test_timing", "timing/pruning_vector_cost_by_hand"),
 ("pv scan not split over CORELETs", "src/timing/headsim.c", "return ceil(ceil((double)n_visible / hw->corelets) / hw->pv_bits_per_cycle);", "return ceil((double)n_visible / hw->pv_bits_per_cycle);", "test_timing", "timing/pruning_vector_cost_by_hand"),
 ("lookahead ignored", "src/timing/headsim.c", "int la = sp_sim_lookahead(hw, nv);", "int la = 0 * sp_sim_lookahead(hw, nv);", "test_timing", "timing/lookahead_and_prefetch_by_hand"),
 ("prefetch ignored", "src/timing/headsim.c", "double issue = hw->prefetch ? thr_end : dmax(thr_end, ds->comp_end);", "double issue = thr_end;", "test_timing", "timing/lookahead_and_prefetch_by_hand"),
 ("index buffer bound removed", "src/timing/headsim.c", "if (held - 1 < la)", "if (0)", "test_timing", "timing/lookahead_bounded_by_index_buffer"),
 ("partial residency -> restream", "src/timing/headsim.c", "if (hw->baseline_dataflow == 1) return nkeys < all ? nkeys : all;", "if (0 && hw->baseline_dataflow == 1) return nkeys < all ? nkeys : all;", "test_sim_designs", "designs/baseline_traffic_equals_analytical_count"),
 ("thresholding stall booked to memory", "src/timing/headsim.c", "else ds->r.bound_thr += part;", "else ds->r.bound_mem += part;", "test_timing", "timing/stall_booked_per_category"),
 ("latency stall booked to compute", "src/timing/headsim.c", "ds->r.bound_lat += added - part;", "ds->r.bound_comp += added - part;", "test_timing", "timing/stall_booked_per_category"),
 ("K_MSB contention ignored", "src/timing/headsim.c", "if (hw->kmsb_contention) thr_start = dmax(thr_start, ds->kmsb_free);", "", "test_timing", "timing/kmsb_contention_delays_thresholding"),
 ("bursts rounded up to core cycles", "src/timing/memory.c", "return 0.5 * (double)beats * hw->mem_cycle;", "return ceil(0.5 * (double)beats * hw->mem_cycle);", "test_timing", "timing/derived_cycles_from_config"),
 ("trace --real with outputs off", "tools/cmd_trace.c", "ocfg->sprint_outputs = 1;", "ocfg->sprint_outputs = 0;", "test_sim_designs", "designs/trace_real_matches_run_real"),
 ("trace rows unsorted", "tools/cmd_trace.c", "qsort(t->rows, t->n, sizeof *t->rows, row_cmp);", "(void)row_cmp;", "test_sim_designs", "designs/trace_real_matches_run_real"),
 ("paper column shown for a changed config", "src/report/summary.c", "int show = !changed;", "int show = 1;", "test_sim_designs", "designs/report_summary_first_paper_only_when_compared"),
 ("pruning design drops masked pairs", "src/timing/headsim.c", "    int all = pruning_scores_all(hw);", "    int all = 0 && pruning_scores_all(hw);", "test_sim_designs", "designs/pruning_scores_padded_and_masked_pairs"),
 ("reuse share ignored", "src/timing/headsim.c", "int rcap = (int)floor(ss->cap * (w->reuse_share > 0 ? w->reuse_share : 1.0));", "int rcap = ss->cap;", "test_sim_designs", "designs/reuse_share_bounds_residency"),
 ("fitted energies lost", "include/sprint/keys_hardware.def", 'qk_mac_pj, REAL, 0, 1e6, "3.55"', 'qk_mac_pj, REAL, 0, 1e6, "0.36"', "test_energy", "energy/defaults_reproduce_baseline_bars"),
]
only = sys.argv[1:] 
for i,(name, f, old, new, test, filt) in enumerate(M):
    if only and str(i) not in only: continue
    src = open(f).read()
    assert src.count(old) == 1, (name, src.count(old))
    shutil.copy(f, "/tmp/i7_mut_backup")
    try:
        open(f, "w").write(src.replace(old, new))
        b = subprocess.run(["cmake", "--build", "build-mut", "-j2", "--target", test, "sprint"], capture_output=True, text=True)
        if b.returncode: print("%-40s BUILD FAILED" % name); print(b.stdout[-2000:]); continue
        r = subprocess.run(["./build-mut/" + test, "--filter", filt], capture_output=True, text=True, cwd=".")
        caught = "Failing: 0" not in r.stderr + r.stdout and "Crashing: 0" in r.stderr + r.stdout or r.returncode != 0
        print("%-40s %-50s %s" % (name, test + " " + filt, "CAUGHT" if r.returncode != 0 else "NOT caught"), flush=True)
    finally:
        shutil.copy("/tmp/i7_mut_backup", f)
