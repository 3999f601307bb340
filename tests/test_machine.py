import os
import subprocess
import sys

import pytest

from noisyfit.engine.machine import OthersCpuMeter, others_share


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
