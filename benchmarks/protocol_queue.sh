#!/usr/bin/env bash
# The CPU protocol evidence for the foundation issue: throughput vs a bare loop, then CE on clean,
# aggre and worst labels with the shared preset. Resumable: a finished run is skipped, an
# interrupted one resumes from its checkpoint.
set -u
cd "$(dirname "$0")/.."
NF=.venv/bin/noisyfit
RES=benchmarks/results/protocol
mkdir -p "$RES" runs/protocol
[ -f benchmarks/results/throughput.json ] || .venv/bin/python benchmarks/throughput.py --out benchmarks/results/throughput.json
for ds in cifar10 cifar10n-aggre cifar10n-worst; do
  out=runs/protocol/ce-$ds
  [ -f "$RES/ce__$ds.json" ] && continue
  resume=""; [ -f "$out/checkpoint.pt" ] && resume="--resume"
  $NF train --config ce/cpu-cifar10n --dataset "$ds" --out "$out" --no-progress $resume && cp "$out/results.json" "$RES/ce__$ds.json"
done
