#!/usr/bin/env bash
# The order of the remaining CPU work (sequential, 2 threads), cheapest open issue first. Resumable:
# rerun after a kill; finished runs are skipped, cut ones resume from their last checkpoint.
# Done earlier: CE and oracle (3 seeds), ELR, CE+PLR, PEMM, CAR, BKD, Co-teaching, J-Co-teaching, Jump-teaching, cleanlab
# (worst, seed 0); CE and CAR on aggre.
set -u
cd "$(dirname "$0")/.."
NF=.venv/bin/noisyfit
# wait for a bench started by an earlier copy of this script (the bench holds a lock)
while pgrep -f "noisyfit bench --suite" >/dev/null; do sleep 20; done
W="--seeds 0 --label-sets worst"
$NF bench --suite cpu-cifar10n --only ce --label-sets worst                # issue 7: seeds 1, 2 (15 min each)
$NF bench --suite cpu-cifar10n --only oracle --label-sets clean            # issue 7: seeds 1, 2 (13 min each)
$NF bench --suite cpu-cifar10n --only dividemix $W                       # issue 5 (~2 h; resumes)
$NF bench --suite cpu-cifar10n --only gce,sce $W                          # issue 7: every method (15 min each)
$NF bench --suite cpu-cifar10n --only elr --seeds 1,2 --label-sets worst  # issue 7: the best, seeds 1-2
$NF bench --suite cpu-cifar10n --only gce --seeds 1,2 --label-sets worst  # issue 7: second best so far
benchmarks/protocol_probes.sh                                              # CE vs the brief's bare loop (40 min)
$NF bench --suite cpu-cifar10n --only plremix $W                        # issue 5 (~3.9 h in all); resumes
# issue 7: aggre for the best two so far (ELR, GCE), one seed each (~15 min each), before the 4-hour run,
# so that a 3-hour session lands them; then ELR+ (~45 min), the last method without a run on worst
$NF bench --suite cpu-cifar10n --only elr,gce --seeds 0 --label-sets aggre
$NF bench --suite cpu-cifar10n --only elr_plus $W
$NF bench --suite cpu-cifar10n --only dividemix_plr $W                  # issue 5 (~3.5-4 h); resumes
# the rest of the suite (issue 7): bkd-detach, seeds 1-2 of the best two, aggre seeds 1-2, cleanlab on aggre
$NF bench --suite cpu-cifar10n
$NF bench --suite cpu-cifar10n --only jump_teaching --seeds 1 --label-sets worst  # per-image strong views
$NF bench report
.venv/bin/python benchmarks/audit_report.py
PROBE_SEEDS=1,2 benchmarks/protocol_probes.sh                          # is bf16 costing CE 0.6 points? (90 min)
