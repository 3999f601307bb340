"""The streamed data path: images decoded from disk while training give exactly the in-memory run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_cfg

from noisyfit.data.batches import iterate_batches
from noisyfit.data.folder import load_image_folder
from noisyfit.data.image_files import ImageFiles
from noisyfit.data.labeled import DataError
from noisyfit.data.store import StreamedStore, make_store
from noisyfit.engine.trainer import Trainer

WORKER = Path(__file__).with_name("stream_worker.py")


@pytest.fixture
def mixed_folder(tmp_path, monkeypatch):
    """train/ and test/ folders of 3 colour classes, PNG and JPEG, 14-22 px (resized to the median)."""
    from PIL import Image

    monkeypatch.setenv("NOISYFIT_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "shapes"
    rng = np.random.default_rng(0)
    colours = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}
    for split, per_class in (("train", 40), ("test", 10)):
        for name, rgb in colours.items():
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                h, w = rng.integers(14, 23, 2)
                img = np.clip(np.array(rgb) + rng.integers(-60, 60, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / split / name / f"{i:03d}.{'png' if i % 2 else 'jpg'}")
    return root


def test_a_streamed_folder_is_a_lazy_array_of_the_same_pixels(mixed_folder):
    with pytest.warns(UserWarning, match="resized to the median"):
        mem = load_image_folder(mixed_folder, stream=False).train
    with pytest.warns(UserWarning, match="resized to the median"):
        lazy = load_image_folder(mixed_folder, stream=True).train
    assert isinstance(lazy.x, ImageFiles) and isinstance(mem.x, np.ndarray)
    assert lazy.x.shape == mem.x.shape and lazy.ids == mem.ids
    np.testing.assert_array_equal(np.asarray(lazy.x), mem.x)
    sub = lazy.subset(np.array([5, 0, 77]))  # subsets stay lazy and keep their rows
    assert isinstance(sub.x, ImageFiles)
    np.testing.assert_array_equal(np.asarray(sub.x), mem.x[[5, 0, 77]])
    np.testing.assert_array_equal(lazy.x[3], mem.x[3])


def test_auto_streams_only_above_the_memory_budget(mixed_folder):
    import warnings

    warnings.simplefilter("ignore")
    decoded_mb = 150 * 18 * 18 * 3 / 2**20  # 150 images at the median size, about 0.14 MiB
    assert isinstance(load_image_folder(mixed_folder, stream="auto", memory_budget_mb=1.0).train.x, np.ndarray)
    streamed = load_image_folder(mixed_folder, stream="auto", memory_budget_mb=decoded_mb / 10).train.x
    assert isinstance(streamed, ImageFiles)
    with pytest.raises(DataError, match="data.stream='maybe'"):
        load_image_folder(mixed_folder, stream="maybe")


def test_streamed_and_in_memory_batches_are_identical(mixed_folder):
    import warnings

    warnings.simplefilter("ignore")
    mem, lazy = load_image_folder(mixed_folder, stream=False).train, load_image_folder(mixed_folder, stream=True).train
    a, b = make_store(mem.x, torch.device("cpu")), make_store(lazy.x, torch.device("cpu"), workers=2)
    assert isinstance(b, StreamedStore)
    y = torch.from_numpy(mem.labels)
    for epoch in (0, 1):
        kw = dict(batch_size=16, seed=3, epoch=epoch)
        pairs = list(zip(iterate_batches(a, y, None, **kw), iterate_batches(b, y, None, **kw)))
        assert len(pairs) == 120 // 16
        for p, q in pairs:  # the same samples, and the same pixels before augmentation
            assert torch.equal(p.index, q.index) and torch.equal(p.raw, q.raw)
    # a resumed epoch starts at its cut: the same batches as the uncut pass from that step on
    full = [q.index for q in iterate_batches(b, y, None, batch_size=16, seed=3, epoch=1)]
    tail = [q.index for q in iterate_batches(b, y, None, batch_size=16, seed=3, epoch=1, start_step=4)]
    assert all(torch.equal(u, v) for u, v in zip(full[4:], tail)) and len(tail) == len(full) - 4


def test_a_streamed_run_equals_the_in_memory_run(mixed_folder):
    import warnings

    warnings.simplefilter("ignore")
    over = (f"data.dataset=folder:{mixed_folder}", "model.backbone=fastcnn", "model.args.widths=[8,16,16]",
            "model.args.stem_width=8", "train.epochs=2", "train.batch_size=16", "data.workers=2",
            "method.name=dividemix", "method.args.warmup_epochs=1")  # DivideMix fetches samples by index too
    # one after the other: a Trainer seeds the global RNG when it is built, and training draws from it
    mem = Trainer(tiny_cfg(*over, "data.stream=false"), None)
    r1 = mem.fit()
    lazy = Trainer(tiny_cfg(*over, "data.stream=true"), None)
    r2 = lazy.fit()
    assert lazy.train_x.streamed and not mem.train_x.streamed
    assert torch.equal(mem.augmenter.mean, lazy.augmenter.mean) and torch.equal(mem.augmenter.std, lazy.augmenter.std)
    assert [e["train_loss"] for e in r1["epochs"]] == [e["train_loss"] for e in r2["epochs"]]
    assert r1["final"]["test_acc"] == r2["final"]["test_acc"]
    assert torch.equal(mem.method.final_probs, lazy.method.final_probs)


def _wait_for_partial(ck_file: Path, epoch: int, step: int, proc, timeout=120.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        if ck_file.is_file():
            try:
                ck = torch.load(ck_file, weights_only=False)
            except Exception:  # caught between write and rename: try again
                ck = None
            part = ck and ck.get("partial")
            if part and (part["epoch"], part["step"]) == (epoch, step):
                return
        time.sleep(0.2)
    raise AssertionError("the worker never reached the step it hangs at")


def test_kill_9_inside_a_streamed_epoch_then_resume_equals_an_uninterrupted_run(mixed_folder, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    sys.path.insert(0, str(WORKER.parent))
    from stream_worker import hang_cfg  # registers the probe method here too

    Trainer(hang_cfg(mixed_folder), straight).fit()
    proc = subprocess.Popen([sys.executable, str(WORKER), str(mixed_folder), str(killed), "--hang-at", "1", "3"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_partial(killed / "checkpoint.pt", 1, 3, proc)
        os.kill(proc.pid, signal.SIGKILL)  # no handler runs: only what is on disk survives
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (killed / "results.json").exists()
    res = subprocess.run([sys.executable, str(WORKER), str(mixed_folder), str(killed), "--resume"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = (json.loads((d / "results.json").read_text()) for d in (straight, killed))
    assert [e["train_loss"] for e in a["epochs"]] == [e["train_loss"] for e in b["epochs"]]
    assert [e["test_acc"] for e in a["epochs"]] == [e["test_acc"] for e in b["epochs"]]
    pa, pb = np.load(straight / "per_sample.npz"), np.load(killed / "per_sample.npz")
    np.testing.assert_array_equal(pa["probs"], pb["probs"])


@pytest.mark.slow
def test_two_process_ddp_on_the_streamed_path_matches_one_process(mixed_folder, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    for cmd, out in (([sys.executable, str(WORKER)], one),
                     ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                       str(WORKER)], two)):
        res = subprocess.run([*cmd, str(mixed_folder), str(out), "--ddp"], env=env, capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
    a, r0, r1 = np.load(one / "rank0.npz"), np.load(two / "rank0.npz"), np.load(two / "rank1.npz")
    assert int(r0["world"]) == 2
    # the tolerance of tests/test_distributed.py: the same averaged gradients up to float summation order
    np.testing.assert_allclose(r0["weights"], a["weights"], atol=1e-4)
    np.testing.assert_array_equal(r0["weights"], r1["weights"])
    np.testing.assert_allclose(r0["losses"], a["losses"], rtol=1e-4)
    np.testing.assert_allclose(r0["probs"], a["probs"], atol=1e-4)
    assert float(r0["test_acc"]) == pytest.approx(float(a["test_acc"]), abs=1e-6)


def _pack(root: Path, target: Path, mode: str) -> Path:
    import tarfile

    with tarfile.open(target, mode) as tf:
        tf.add(root, arcname=root.name)
    return target


@pytest.mark.parametrize("mode,suffix", [("w", ".tar"), ("w:gz", ".tar.gz")])
def test_an_archive_streams_in_place_or_from_one_extraction(mixed_folder, tmp_path, mode, suffix):
    import warnings

    warnings.simplefilter("ignore")
    archive = _pack(mixed_folder, tmp_path / f"shapes{suffix}", mode)
    mem = load_image_folder(mixed_folder, stream=False).train
    lazy = load_image_folder(archive, stream=True).train
    assert lazy.ids == mem.ids
    np.testing.assert_array_equal(np.asarray(lazy.x), mem.x)
    extracted = list((tmp_path / "cache" / "extracted").glob("*"))
    # an uncompressed tar is read by member offset; only gzip (no seeking) is extracted, once
    assert (len(extracted) == 1) == (mode == "w:gz")
    again = load_image_folder(archive, stream=True).train  # from the cached listing: same rows
    np.testing.assert_array_equal(np.asarray(again.x[:5]), mem.x[:5])


def test_an_image_list_loads_labels_as_written_and_streams(mixed_folder, tmp_path):
    import warnings

    warnings.simplefilter("ignore")
    rows = ["path,label,split,true_label"]
    for i, f in enumerate(sorted(mixed_folder.glob("*/*/*"))):
        split, cls = f.parts[-3], f.parts[-2]
        given = "green" if (split == "train" and i % 10 == 0 and cls != "green") else cls  # some wrong labels
        rows.append(f"{f.relative_to(mixed_folder)},{given},{split},{cls}")
    (mixed_folder / "list.csv").write_text("\n".join(rows) + "\n")
    from noisyfit.data.sources import load_dataset

    mem = load_dataset(f"list:{mixed_folder / 'list.csv'}", stream=False)
    lazy = load_dataset(f"list:{mixed_folder / 'list.csv'}", stream=True)
    assert mem.train.class_names == ["blue", "green", "red"] and len(mem.train) == 120 and len(mem.test) == 30
    assert isinstance(lazy.train.x, ImageFiles)
    np.testing.assert_array_equal(np.asarray(lazy.train.x), mem.train.x)
    assert 0 < mem.train.noise_rate < 0.15 and mem.train.ids[0].startswith("train/")
    # the list's pixels are the folder's pixels (same decoder, same size rule)
    folder = load_image_folder(mixed_folder, stream=False)
    k = folder.train.ids.index(mem.train.ids[7])
    np.testing.assert_array_equal(mem.train.x[7], folder.train.x[k])


def test_image_list_errors_name_the_row(tmp_path):
    (tmp_path / "a.csv").write_text("file,label\nx.png,cat\n")
    with pytest.raises(DataError, match="no 'path' column"):
        from noisyfit.data.image_list import load_image_list

        load_image_list(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("path,label\nmissing.png,cat\nalso.png,dog\n")
    with pytest.raises(DataError, match="cannot decode 2 of 2 images:.*missing.png.*also.png"):
        load_image_list(tmp_path / "b.csv", stream=True)
    (tmp_path / "c.json").write_text('[{"path": "x.png", "label": "cat", "split": "holdout"}]')
    with pytest.raises(DataError, match="entry 1: 'holdout'"):
        load_image_list(tmp_path / "c.json")


def test_an_image_list_reads_its_declared_classes(mixed_folder):
    # as csv: does, <name>.classes.txt next to the list declares the classes (a new-user trial found the list
    # ignored it and trained a typo as an 11th class)
    files = sorted(mixed_folder.glob("train/*/*"))[:12]
    rows = ["path,label", *(f"{f.relative_to(mixed_folder)},{f.parts[-2]}" for f in files)]
    rows[5] = rows[5].rsplit(",", 1)[0] + ",gren"
    (mixed_folder / "typo.csv").write_text("\n".join(rows) + "\n")
    (mixed_folder / "typo.classes.txt").write_text("red\ngreen\nblue\n")
    from noisyfit.data.image_list import load_image_list

    with pytest.raises(DataError, match=r"not one of the 3 declared classes \(red, green, blue\): line 6.*'gren'"):
        load_image_list(mixed_folder / "typo.csv", stream=False)
    (mixed_folder / "typo.csv").write_text("\n".join(rows[:5] + rows[6:]) + "\n")
    ok = load_image_list(mixed_folder / "typo.csv", stream=False).train
    assert ok.class_names == ["red", "green", "blue"]  # the declared order, not the sorted one


@pytest.mark.parametrize("workers", [0, 2])
def test_under_torch_distributed_batches_are_decoded_in_this_process_and_equal_the_forked_ones(
        mixed_folder, monkeypatch, workers):
    """Under torch.distributed (simulated here) nothing is forked: threads of the training process decode images
    (none with data.workers=0); the batches are the forked workers' batches, in order, and an epoch cut short
    leaves no decoding behind."""
    import threading
    import warnings

    from noisyfit.data import store as store_module

    warnings.simplefilter("ignore")
    lazy = load_image_folder(mixed_folder, stream=True).train.x
    plan = [torch.randperm(len(lazy), generator=torch.Generator().manual_seed(k))[:16] for k in range(5)]
    forked = list(store_module.StreamedStore(lazy, "cpu", workers=2).batches(plan))
    monkeypatch.setattr(store_module, "_forking_is_unsafe", lambda: True)
    monkeypatch.setattr(torch.utils.data, "DataLoader", None)  # any worker process would need it
    inside = store_module.StreamedStore(lazy, "cpu", workers=workers)
    got = list(inside.batches(plan))
    assert len(got) == len(forked) == 5
    for a, b in zip(forked, got):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    cut = inside.batches(plan)
    next(cut)
    cut.close()  # a stop mid-epoch: the queued batches are cancelled and the pool is gone
    assert not [t for t in threading.enumerate() if t.name.startswith("noisyfit-decode")]
