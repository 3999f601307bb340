import os
import subprocess
import sys

import pytest

from noisyfit.engine.machine import OthersCpuMeter, others_share, sharing_hint


def test_others_share_subtracts_this_process_from_the_machine_by_hand():
    # 20 CPU-seconds elapsed on the machine, 10 busy, 6 of them ours: others used 4 / 20
    assert others_share((100.0, 1000.0), (110.0, 1020.0), 50.0, 56.0) == pytest.approx(0.2)
    # our own work alone: nothing for others (and never below 0 when clock ticks disagree)
    assert others_share((100.0, 1000.0), (110.0, 1020.0), 50.0, 61.0) == 0.0
    assert others_share((0.0, 5.0), (0.0, 5.0), 0.0, 0.0) is None  # an empty interval


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the meter reads Linux's /proc/stat")
def test_meter_sees_another_process_burning_a_core():
    ncpu = len(os.sched_getaffinity(0))  # the CPUs the meter counts (the burner inherits them)
    meter = OthersCpuMeter()
    burner = subprocess.Popen([sys.executable, "-c",
                               "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"])
    burner.wait()
    share = meter.share()
    # one busy core out of ncpu for most of the interval (process start-up included)
    assert share is not None and share > 0.5 / ncpu


def test_sharing_hint_asks_for_the_threads_the_run_actually_gets():
    # others took half of 2 CPUs while we ran 2 threads: 1 thread fits
    hint = sharing_hint(0.5, threads=2, cpus=2)
    assert hint is not None and "train.threads=1" in hint and "50%" in hint
    assert "--threads 1" in hint
    # 8 CPUs, others took 30%: round(8 * 0.7) = 6 threads fit, 8 do not
    assert "train.threads=6" in sharing_hint(0.3, threads=8, cpus=8)
    assert sharing_hint(0.3, threads=6, cpus=8) is None  # already within its share
    assert sharing_hint(0.2, threads=2, cpus=2) is None  # a light neighbour: not worth a warning
    assert sharing_hint(0.9, threads=1, cpus=2) is None  # one thread cannot be split further
    assert sharing_hint(None, threads=2, cpus=2) is None  # no reading (not Linux, or an empty interval)
