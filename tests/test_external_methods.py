"""Methods defined outside noisyfit: ``file.py:Name`` and ``module:Name`` method names, installed packages'
``noisyfit.methods`` entry points, and the bench refusing a name it cannot run (a researcher's trial)."""

import json
import textwrap

import pytest

import noisyfit.methods.base as base
from noisyfit.cli import main
from noisyfit.models.backbones import UnknownNameError

QUICK = ["--dataset", "digits", "--noise", "sym:0.4", "--backbone", "mlp", "--epochs", "2", "--no-progress",
         "train.tensorboard=false", "model.args.hidden=[16]"]

SOURCE = textwrap.dedent('''
    import dataclasses

    import torch.nn.functional as F

    from noisyfit.methods.base import register_method
    from noisyfit.methods.single_network import SingleNetworkLossMethod


    class SoftBootstrap(SingleNetworkLossMethod):
        """Reed et al. 2015, soft bootstrapping: CE against beta * one-hot + (1 - beta) * prediction."""

        @dataclasses.dataclass
        class Hyper:
            beta: float = 0.95

        def loss(self, logits, labels):
            p = F.softmax(logits, 1)
            target = self.hp.beta * F.one_hot(labels, logits.shape[1]) + (1 - self.hp.beta) * p.detach()
            return -(target * F.log_softmax(logits, 1)).sum(1)


    @register_method("{registered}")
    class Registered(SoftBootstrap):
        pass
''')


@pytest.fixture(autouse=True)
def _registry_kept(monkeypatch):
    """The methods these tests register leave with them (other tests list every registered method)."""
    base.list_methods()  # the built-in ones first: registered once per process, they must stay in the original
    monkeypatch.setattr(base, "_METHODS", dict(base._METHODS))


def _write(folder, module, registered):
    path = folder / f"{module}.py"
    path.write_text(SOURCE.replace("{registered}", registered))
    return path


def test_a_method_in_a_file_trains_resumes_and_predicts_by_its_spec(tmp_path, capsys):
    from noisyfit.predictor import load_predictor

    spec = f"{_write(tmp_path, 'boot_file', 'boot_in_file')}:SoftBootstrap"
    run = tmp_path / "run"
    assert main(["train", *QUICK, "--method", spec, "method.args.beta=0.8", "--out", str(run), "--stop-after", "1"]) == 0
    assert main(["train", "--out", str(run), "--resume"]) == 0  # the spec is in config.yaml: found again
    r = json.loads((run / "results.json").read_text())
    assert r["config"]["method"]["name"] == spec and r["config"]["method"]["args"] == {"beta": 0.8}
    assert len(r["epochs"]) == 2
    assert load_predictor(run).predict(__import__("numpy").zeros((3, 64), "float32")).shape == (3,)
    assert main(["train", *QUICK, "--method", spec, "method.args.bta=1", "--out", str(tmp_path / "bad")]) == 2
    assert "no hyper-parameter 'bta'" in capsys.readouterr().err


def test_a_module_on_the_path_and_its_registered_names(tmp_path, monkeypatch):
    _write(tmp_path, "boot_module", "boot_registered")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert base.get_method_class("boot_module:SoftBootstrap").__name__ == "SoftBootstrap"
    cls = base.get_method_class("boot_module:boot_registered")  # a name the module registered
    assert cls.__name__ == "Registered" and cls.name == "boot_registered"
    assert base.get_method_class("boot_registered") is cls  # once imported, as a built-in name


@pytest.mark.parametrize("spec, message", [
    ("nowhere_module_xyz:Boot", "cannot import 'nowhere_module_xyz'"),
    ("/no/such/file.py:Boot", "no file"),
    ("json:loads", "'loads' in json is a function, not a subclass of noisyfit.methods.base.Method"),
    ("json:no_such_name", "no Method subclass or registered method named 'no_such_name'"),
    ("bootstrap", "or name your own as module:ClassName"),
])
def test_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(UnknownNameError, match=message):
        base.get_method_class(spec)


def test_installed_packages_register_methods_through_their_entry_point(tmp_path, monkeypatch):
    _write(tmp_path, "boot_plugin", "boot_plugin_method")
    monkeypatch.syspath_prepend(str(tmp_path))

    class EntryPoint:
        name, value = "boot", "boot_plugin"

        def load(self):
            return __import__("boot_plugin")

    seen = []
    monkeypatch.setattr("importlib.metadata.entry_points",
                        lambda group: seen.append(group) or [EntryPoint()])
    monkeypatch.setattr(base, "_entry_points_loaded", False)
    assert "boot_plugin_method" in base.list_methods() and seen == [base.ENTRY_POINT_GROUP]


def test_the_bench_refuses_a_method_it_cannot_run(tmp_path, capsys):
    assert main(["bench", "--suite", "cpu-cifar10n", "--only", "my_boot,ce", "--dry-run",
                 "--out", str(tmp_path / "res"), "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "--only my_boot: not a method suite 'cpu-cifar10n' can run" in err and "noisyfit summary" in err


BROKEN = textwrap.dedent('''
    import torch.nn.functional as F

    from noisyfit.methods.single_network import SingleNetworkLossMethod


    class Returns(SingleNetworkLossMethod):
        def training_step(self, batch, epoch):
            loss = F.cross_entropy(self.net(batch.x), batch.y, reduction="none")
            return {KIND}
''')


@pytest.mark.parametrize("kind,message", [
    ("loss.mean()", "it returned a Tensor"),
    ("(loss.mean(), 0)", "it returned a tuple"),
    ('{"loss": loss.mean().item()}', "its 'loss' is a float"),
    ('{"loss": loss}', "its 'loss' has shape [64] (a per-sample loss? take its .mean())"),
    ('{"loss": loss.mean(), "note": "x"}', "these are neither: 'note'"),
    ('{"total": loss.mean()}', "its 'loss' is missing"),
])
def test_a_step_that_breaks_the_contract_exits_2_saying_it(tmp_path, capsys, kind, message):
    # a researcher's trial: each of these met an AttributeError or RuntimeError deep in the loop (exit 1)
    path = tmp_path / "broken.py"
    path.write_text(BROKEN.replace("{KIND}", kind))
    assert main(["train", "--method", f"{path}:Returns", "--out", str(tmp_path / "r"), *QUICK,
                 "train.batch_size=64"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "training_step must return a dict with the scalar loss tensor" in err
    assert message in err


def test_a_method_file_given_relative_is_found_from_another_folder(tmp_path, monkeypatch, capsys):
    # a researcher's trial: the run recorded mymethods/boot.py relative to where it trained, so --resume and
    # predict from another folder found no file
    (tmp_path / "mine").mkdir()
    _write(tmp_path / "mine", "boot_rel", "boot_rel_registered")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--method", "mine/boot_rel.py:SoftBootstrap", "--out", "run", "--stop-after", "1",
                 *QUICK]) == 0
    monkeypatch.chdir(tmp_path / "mine")
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", "--no-progress"]) == 0
    recorded = json.loads((tmp_path / "run" / "results.json").read_text())["config"]["method"]["name"]
    assert recorded == f"{tmp_path / 'mine' / 'boot_rel.py'}:SoftBootstrap"
    import numpy as np
    np.save(tmp_path / "x.npy", np.zeros((2, 64), np.float32))
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "x.npy")]) == 0


def test_a_method_without_predict_logits_is_refused_before_training(tmp_path, capsys):
    path = tmp_path / "nopredict.py"
    path.write_text(textwrap.dedent('''
        import torch.nn.functional as F

        from noisyfit.methods.base import Method


        class NoPredict(Method):
            def __init__(self, hyper, num_classes, num_samples, make_backbone):
                super().__init__(hyper, num_classes, num_samples, make_backbone)
                self.net = make_backbone()

            def training_step(self, batch, epoch):
                return {"loss": F.cross_entropy(self.net(batch.x), batch.y)}
    '''))
    assert main(["train", "--method", f"{path}:NoPredict", "--out", str(tmp_path / "r"), *QUICK]) == 2
    err = capsys.readouterr().err
    assert "does not define predict_logits(x)" in err and "Traceback" not in err
    assert not (tmp_path / "r" / "metrics.jsonl").exists() or not (tmp_path / "r" / "metrics.jsonl").read_text()
