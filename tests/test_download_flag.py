"""`--download` exists where messages suggest it, and every message names it the same way."""

import re
from pathlib import Path

import pytest

from noisyfit.cli import main
from noisyfit.data import cifar


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty data dir and cache (no CIFAR anywhere); a download records its call instead of fetching."""
    monkeypatch.setenv("NOISYFIT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "data").mkdir()
    calls = []

    def fake_download(name, dest):
        calls.append(name)
        raise cifar.DataError(f"(test) download of {name} asked for")

    monkeypatch.setattr(cifar, "download_cifar", fake_download)
    return tmp_path / "data", calls


@pytest.mark.parametrize("command", [
    ["train", "--dataset", "cifar100"],
    ["audit", "cifar100", "--folds", "2"],
    ["noise", "--dataset", "cifar100", "--spec", "sym:0.2"],
])
def test_the_suggested_flag_exists_and_reaches_the_loader(tmp_path, capsys, offline, command):
    data_dir, calls = offline
    out = str(tmp_path / ("labels.npz" if command[0] == "noise" else "out"))
    args = [*command, "--data-dir", str(data_dir), "--out", out]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "or use --download (data.download=true)" in err and "Traceback" not in err and calls == []
    assert main([*args[:1], "--download", *args[1:]]) == 2
    err = capsys.readouterr().err
    assert "(test) download of cifar100 asked for" in err and calls == ["cifar100"]


def test_the_setting_does_the_same_as_the_flag(tmp_path, capsys, offline):
    data_dir, calls = offline
    assert main(["train", "--dataset", "cifar100", "--data-dir", str(data_dir), "--out", str(tmp_path / "o"),
                 "data.download=true"]) == 2
    assert calls == ["cifar100"] and "(test) download" in capsys.readouterr().err


def test_list_names_the_flag_and_its_setting(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "--download" in line]
    assert lines and all("data.download=true" in line for line in lines)


def test_every_message_that_suggests_download_says_it_the_same_way():
    src = Path(cifar.__file__).parents[1]
    found = []
    for path in src.rglob("*.py"):
        text = path.read_text()
        for m in re.finditer(r"--download", text):
            after = text[m.end():m.end() + 60]
            line = text.count("\n", 0, m.start()) + 1
            if "add_argument" in text[max(0, m.start() - 40):m.start()]:
                continue  # the flag's own definition
            found.append((path.name, line, "data.download=true" in re.sub(r"[\"\s]+", " ", after)))
    assert found and all(ok for *_, ok in found), [f for f in found if not f[2]]


def test_list_describes_every_method_and_groups_presets_by_method(capsys):
    from noisyfit.commands.list import presets_by_method
    from noisyfit.methods import get_method_class, list_methods

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (m for m in list_methods() if not m.startswith("_")):  # "_x": other tests' probes, not listed
        summary = get_method_class(name).summary
        assert summary and f"  {name:15s} {summary}" in out  # a new user asked what each method is
    assert presets_by_method(["ce/a", "ce/b", "gce/a", "smoke"]) == {"ce": ["a", "b"], "gce": ["a"], "smoke": ["smoke"]}
    assert "  ce/" in out and "cpu-cifar10n-airbench-ls" in out.split("  ce/")[1].splitlines()[0]
