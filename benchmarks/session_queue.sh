#!/usr/bin/env bash
# This session's order of CPU work (sequential, 2 threads): the foundation's protocol runs first,
# then the cheapest methods. Every step is resumable; rerun the script after a kill.
set -u
cd "$(dirname "$0")/.."
NF=.venv/bin/noisyfit
$NF bench --suite cpu-cifar10n --only ce,oracle --seeds 0
[ -f benchmarks/results/throughput.json ] || .venv/bin/python benchmarks/throughput.py --out benchmarks/results/throughput.json
.venv/bin/python benchmarks/protocol_report.py
$NF bench --suite cpu-cifar10n --only jump_teaching,pemm,elr,car --seeds 0
$NF bench --suite cpu-cifar10n --only bkd,coteaching,j_coteaching,ce_plr --seeds 0
$NF bench --suite cpu-cifar10n --only dividemix,plremix,dividemix_plr --seeds 0
