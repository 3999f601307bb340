import math

import pytest
import torch

from noisyfit.config import ConfigError, OptimConfig
from noisyfit.engine.optim import lr_factor


def test_cosine_periodic_matches_torch_cosine_annealing_past_t_max():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0)
    cfg = OptimConfig(lr=1.0, schedule="cosine_periodic", restart_period=10)
    for epoch in range(35):
        assert lr_factor(cfg, epoch, 60) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-9)
        opt.step()
        sched.step()


def test_restarts_jump_back_and_linear_warmup():
    cfg = OptimConfig(lr=1.0, schedule="cosine_restarts", restart_period=10)
    assert lr_factor(cfg, 9.999, 50) < 1e-6 and lr_factor(cfg, 10.0, 50) == pytest.approx(1.0)
    lin = OptimConfig(lr=1.0, schedule="linear", warmup_epochs=2)
    assert lr_factor(lin, 1.0, 12) == pytest.approx(0.5)
    assert lr_factor(lin, 2.0, 12) == pytest.approx(1.0) and lr_factor(lin, 7.0, 12) == pytest.approx(0.5)
    step = OptimConfig(lr=1.0, schedule="step", milestones=[3, 6], gamma=0.1)
    assert [round(lr_factor(step, e, 9), 6) for e in (2, 3, 6)] == [1.0, 0.1, 0.01]
    assert lr_factor(OptimConfig(schedule="cosine"), 5.0, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))
    with pytest.raises(ConfigError, match="unknown"):
        lr_factor(OptimConfig(schedule="wiggly"), 0, 1)
