#!/usr/bin/env bash
# The order of the remaining CPU work (sequential, 2 threads), cheapest open issue first. Resumable:
# rerun after a kill; finished runs are skipped, cut ones resume from their last checkpoint.
# Session 1 ran CE, the oracle, PEMM, CAR and BKD; session 2 Co-teaching, J-Co-teaching,
# Jump-teaching and the cleanlab row (all on worst, seed 0).
set -u
cd "$(dirname "$0")/.."
NF=.venv/bin/noisyfit
# wait for a bench started by an earlier copy of this script (the bench holds a lock)
while pgrep -f "noisyfit bench --suite" >/dev/null; do sleep 20; done
W="--seeds 0 --label-sets worst"
$NF bench --suite cpu-cifar10n --only cleanlab $W                      # issue 6 (~58 min)
$NF bench --suite cpu-cifar10n --only bkd-detach $W                    # issue 3 variant (~30 min)
$NF bench --suite cpu-cifar10n --only elr,ce_plr $W                    # issue 5 (~16 + 29 min)
$NF bench --suite cpu-cifar10n --only dividemix,plremix,dividemix_plr $W   # issue 5 (~1 h each)
$NF bench --suite cpu-cifar10n --only ce,oracle --label-sets worst,clean    # issue 7: seeds 1, 2
$NF bench --suite cpu-cifar10n                                         # the rest: best two x seeds, aggre
$NF bench report
.venv/bin/python benchmarks/audit_report.py
