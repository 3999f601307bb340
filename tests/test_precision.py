"""bf16 on a CPU without bf16 kernels: the trainer warns, the bench refuses unless told, nothing switches silently."""

import json

import pytest
import torch

from noisyfit.bench.plan import expand_suite, runnable_methods
from noisyfit.bench.runner import emulated_bf16_note, run_suite
from noisyfit.bench.suites import SUITES
from noisyfit.config import ConfigError, load_config
from noisyfit.engine import precision
from noisyfit.engine.trainer import Trainer

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def no_bf16_kernels(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_kernels", lambda: False)


def test_the_warning_is_for_bf16_on_a_cpu_without_kernels_only(monkeypatch):
    for kernels in (True, None):  # with the kernels, or when torch cannot tell: no warning
        monkeypatch.setattr(precision, "cpu_bf16_kernels", lambda k=kernels: k)
        assert precision.emulated_bf16_warning(CPU, "bf16") is None
    monkeypatch.setattr(precision, "cpu_bf16_kernels", lambda: False)
    msg = precision.emulated_bf16_warning(CPU, "bf16")
    assert "without bf16 kernels" in msg and "train.precision=fp32" in msg and "not comparable" in msg
    assert precision.emulated_bf16_warning(CPU, "fp32") is None
    assert precision.emulated_bf16_warning(CUDA, "bf16") is None  # a GPU's bf16 is another matter


def test_the_trainer_warns_and_keeps_bf16(no_bf16_kernels, capsys):
    cfg = load_config(None, ["data.dataset=digits", "train.precision=bf16", "train.device=cpu", "train.epochs=1"])
    trainer = Trainer(cfg, None)
    assert trainer.precision == "bf16"  # a warning, not a silent switch to fp32
    assert "warning: train.precision=bf16 on a CPU without bf16 kernels" in capsys.readouterr().err


def _plan(suite_name: str, **kw):
    plans = expand_suite(SUITES[suite_name], registered=runnable_methods(), results_root=kw.pop("results_root"), **kw)
    return [r for p in plans for r in p.runs]


def test_the_bench_refuses_a_bf16_suite_here_unless_allowed_and_the_dry_run_says_why(tmp_path, no_bf16_kernels,
                                                                                     capsys):
    kw = dict(results_root=tmp_path / "results", runs_root=tmp_path / "runs", only={"ce"}, seeds=(0,),
              label_sets={"worst"})
    with pytest.raises(ConfigError, match="no bf16 kernels.*--allow-emulated-bf16"):
        run_suite(SUITES["cpu-cifar10n"], **kw)
    assert not (tmp_path / "runs").exists()  # refused before any run started
    run_suite(SUITES["cpu-cifar10n"], dry_run=True, **kw)
    assert "warning: 1 of 1 run(s) to do train in bf16 on the CPU" in capsys.readouterr().out
    # the smoke suite trains in fp32 (auto on the CPU): nothing to say
    assert emulated_bf16_note(_plan("smoke", results_root=tmp_path / "results", only={"ce"})) is None


def test_with_bf16_kernels_the_bench_has_nothing_to_say(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_kernels", lambda: True)
    specs = _plan("cpu-cifar10n", results_root=tmp_path, only={"ce"}, seeds=(0,), label_sets={"worst"})
    assert specs and emulated_bf16_note(specs) is None


def test_the_estimate_says_when_its_times_come_from_another_kind_of_cpu(tmp_path, monkeypatch):
    from noisyfit.bench.runner import Estimator

    def put(name, machine):
        (tmp_path / f"{name}__worst__seed0.json").write_text(json.dumps(
            {"schema": "noisyfit.results/1", "machine": machine, "epochs": [], "bench": {"wall_seconds": 60.0}}))

    put("ce", {"cpu": "AMD EPYC"})  # written before machines recorded their capability: says nothing
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert Estimator.from_results(tmp_path).machine_note() is None
    put("gce", {"cpu": "AMD EPYC", "cpu_capability": "AVX512"})
    est = Estimator.from_results(tmp_path)
    assert est.estimate("ce") == 60.0 and est.capabilities == {"AVX512"}
    assert est.machine_note() == ("the measured times come from machines where torch saw AVX512; here it sees AVX2, "
                                  "so expect other times")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert est.machine_note() is None
