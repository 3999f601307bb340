#!/usr/bin/env bash
# This session's order of CPU work (sequential, 2 threads): the foundation's protocol runs first,
# then the methods of issue 3, 4 and 5, cheapest issue first. Resumable: rerun after a kill.
set -u
cd "$(dirname "$0")/.."
NF=.venv/bin/noisyfit
# wait for a bench started by an earlier copy of this script (the bench holds a lock)
while pgrep -f "noisyfit bench --suite" >/dev/null; do sleep 20; done
$NF bench --suite cpu-cifar10n --only ce,oracle --seeds 0
[ -f benchmarks/results/throughput.json ] || .venv/bin/python benchmarks/throughput.py --out benchmarks/results/throughput.json
.venv/bin/python benchmarks/protocol_report.py
$NF bench --suite cpu-cifar10n --only pemm,car,bkd --seeds 0
$NF bench --suite cpu-cifar10n --only jump_teaching,coteaching,j_coteaching --seeds 0
$NF bench --suite cpu-cifar10n --only elr,ce_plr,dividemix,plremix,dividemix_plr --seeds 0
