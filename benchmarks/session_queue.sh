#!/usr/bin/env bash
# The order of the remaining CPU work, as two lanes of one thread each (two benches share 2 cores well;
# each run is held by its own lock, so the lanes never take the same run). Resumable: start the same lane
# again after a kill; finished runs are skipped, cut ones resume from their last checkpoint.
#
#   nohup benchmarks/session_queue.sh a >> runs/lane-a.log 2>&1 &
#   nohup benchmarks/session_queue.sh b >> runs/lane-b.log 2>&1 &
#
# The suites train in bf16: on a CPU without bf16 kernels (AVX2 only) `noisyfit bench` refuses them, as each
# run would take many times its estimate there (benchmarks/PRECISION_SPEED.md). On such a CPU run lane fp32
# alone, at two threads: the airbench suite's float32 twin (a suite of its own), so that issue 21 can move.
#
#   nohup benchmarks/session_queue.sh fp32 >> runs/lane-fp32.log 2>&1 &
#
# Which CPU is this: .venv/bin/python -c "import torch; print(torch.ops.mkldnn._is_mkldnn_bf16_supported())"
# `noisyfit bench --suite S --dry-run` shows what is left of a suite and the time it should take.
set -u
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=passive
B=".venv/bin/noisyfit bench --threads 1"
A=".venv/bin/python benchmarks/recipe_ablation.py --threads 1"
case "${1:-}" in
a)
    # issue 17: the long suite's PLReMix, the last seed method its acceptance waits for (about 8 h at one
    # thread beside another bench), then its prototype ablation, then the rest of the suite in stage order
    $B --suite cpu-cifar10n-long --only plremix
    $B --suite cpu-cifar10n-long --only plremix-ownproto
    $A  # issue 21's ablation table, shared with lane b run by run (each run has its own lock)
    $B --suite cpu-cifar10n-long
    ;;
b)
    # issue 21: under airbench94's recipe, CE on worst and the oracle's three seeds (about 47 min each),
    # then the recipe ablation, then the suite's methods; then the long suite's remaining rows beside lane a
    $B --suite cpu-cifar10n-airbench --only ce --seeds 0 --label-sets worst
    $B --suite cpu-cifar10n-airbench --only oracle
    for s in 0 1 2; do  # the testing half of the JPEG gap on those oracles (minutes; an existing tag is refused)
        .venv/bin/python benchmarks/jpeg_gap.py --evaluate "runs/bench/cpu-cifar10n-airbench/oracle/clean/seed$s" \
            --tag "airbench-oracle-seed$s" --threads 1
    done
    $A  # issue 21's ablation table: each trick alone and together, clean and worst (about 32 h of runs in all)
    $B --suite cpu-cifar10n-airbench
    $B --suite cpu-cifar10n-long
    ;;
fp32)
    # issue 21 on a CPU that emulates bf16: the oracle's three seeds and CE on worst in float32 (about 2 h
    # each at two threads, evaluation included), each oracle then tested on both versions of the 1,017 paired test images
    F=".venv/bin/noisyfit bench --threads 2 --suite cpu-cifar10n-airbench-fp32"
    for s in 0 1 2; do
        $F --only oracle --seeds $s
        d="runs/bench/cpu-cifar10n-airbench-fp32/oracle/clean/seed$s"
        [ -f "benchmarks/results/jpeg-gap/eval__airbench-fp32-oracle-seed$s.json" ] || [ ! -f "$d/model.pt" ] ||
            .venv/bin/python benchmarks/jpeg_gap.py --evaluate "$d" --tag "airbench-fp32-oracle-seed$s" --threads 2
        [ "$s" = 0 ] && $F --only ce --seeds 0 --label-sets worst
    done
    # the whitening-floor probe (is the JPEG copy's weak-direction noise part of the gap?), then the ablation's
    # float32 reference (the protocol in float32, clean and worst: what the float32 rows are compared with),
    # then the suite
    .venv/bin/python benchmarks/recipe_ablation.py --threads 2 --rows airbench-but-ls-fp32-eps --label-sets clean
    .venv/bin/python benchmarks/recipe_ablation.py --threads 2 --rows fp32 --label-sets clean,worst
    # the suite's stage 3 (GCE, then CE with label smoothing, on worst), then the ablation's rows, which issue 21's
    # acceptance asks for and the suite's later stages do not: airbench94_muon at 8 and 12 epochs (about 65 and
    # 80 min), then each trick alone in float32 (about 2 h each), on clean labels first, TTA last (it trains
    # ce-fp32's model again); then the rest of the suite
    $F --only gce,ce-ls --seeds 0 --label-sets worst
    R=".venv/bin/python benchmarks/recipe_ablation.py --threads 2"
    $R --rows muon-but-ls-fp32,muon12-but-ls-fp32 --label-sets clean
    T="whiten-fp32,dirac-fp32,bnbias-fp32,ls-fp32,ema-fp32,lookahead-fp32,altflip-fp32,hyp-fp32,bnscale-fp32,crop2-fp32"
    $R --rows "$T" --label-sets clean
    $R --rows "$T" --label-sets worst
    $R --rows tta-fp32 --label-sets clean,worst
    $F
    ;;
*)
    echo "usage: $0 a|b|fp32   (see the comments at the top)" >&2
    exit 2
    ;;
esac
.venv/bin/noisyfit bench report
