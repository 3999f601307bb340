"""Image folders of any size and format: the size policy (data.image_size), RGB conversion, messages."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from noisyfit.cli import main
from noisyfit.data.folder import load_image_folder, target_size
from noisyfit.data.labeled import DataError
from noisyfit.data.labels import DataWarning
from noisyfit.data.sources import load_dataset

QUICK = ["--epochs", "1", "--device", "cpu", "--precision", "fp32", "--no-progress", "model.args.hidden=[16]",
         "train.batch_size=8", "train.tensorboard=false", "data.val_fraction=0"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NOISYFIT_CACHE_DIR", str(tmp_path / "cache"))


def rgb(path, h, w, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


@pytest.fixture
def mixed(tmp_path):
    """Two classes, five sizes (h x w: 10x20 .. 50x60) and five formats: grey, RGBA, palette, 16-bit, RGB."""
    root = tmp_path / "mixed"
    rgb(root / "a" / "1.png", 10, 20, 40)
    (root / "a").mkdir(exist_ok=True)
    Image.fromarray(np.full((20, 30), 90, np.uint8), mode="L").save(root / "a" / "2.png")  # grey
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 0] = 200  # red, but fully transparent: shown on white
    Image.fromarray(rgba, "RGBA").save(root / "a" / "3.png")
    (root / "b").mkdir()
    Image.fromarray(np.full((40, 50, 3), 153, np.uint8)).convert("P").save(root / "b" / "4.gif")  # palette
    Image.fromarray(np.full((50, 60), 65535, np.uint16)).save(root / "b" / "5.png")  # 16-bit grey, white
    return root


def test_median_rule_for_a_folder_of_mixed_sizes_and_formats(mixed):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train = load_image_folder(mixed).train
    # the median height of 10, 20, 30, 40, 50 and the median width of 20, 30, 40, 50, 60
    assert train.x.shape == (5, 30, 40, 3) and train.x.dtype == np.uint8
    assert train.ids == ["a/1.png", "a/2.png", "a/3.png", "b/4.gif", "b/5.png"]
    # uniform images stay uniform through the resize: one colour per image, as RGB
    np.testing.assert_array_equal(train.x[:, 15, 20], [[40] * 3, [90] * 3, [255] * 3, [153] * 3, [255] * 3])
    assert all((img == img[0, 0]).all() for img in train.x)
    notes = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(notes) == 1 and "5 sizes (height 10-50, width 20-60 px)" in notes[0]
    assert "resized to the median 30x40 (height x width)" in notes[0] and "data.image_size" in notes[0]
    # a cache hit gives the same pixels and says the same thing again
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        np.testing.assert_array_equal(load_image_folder(mixed).train.x, train.x)
    assert [str(w.message) for w in again if issubclass(w.category, DataWarning)] == notes


def _notes(load):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load()
    return data, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def test_a_class_folder_without_images_is_named_not_dropped_silently(tmp_path):
    root = tmp_path / "pets"
    for cls in ("cat", "dog"):
        for i in range(2):
            rgb(root / cls / f"{i}.png", 8, 8, 50)
    (root / "emu").mkdir()
    (root / "emu" / "readme.txt").write_text("no images yet")
    (root / ".hidden").mkdir()
    train, notes = _notes(lambda: load_image_folder(root).train)
    assert train.class_names == ["cat", "dog"]
    assert notes == [f"{root}: class folder holds no image files and is left out of the classes: 'emu'. Add "
                     "images to it, or remove it."]
    # the same under split folders, for each split; a folder with images everywhere says nothing
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            rgb(tmp_path / "s" / split / cls / "0.png", 8, 8, 50)
    (tmp_path / "s" / "test" / "emu").mkdir()
    _, notes = _notes(lambda: load_image_folder(tmp_path / "s"))
    assert len(notes) == 1 and "class folder holds no image files" in notes[0] and "'test/emu'" in notes[0]
    (tmp_path / "s" / "test" / "emu").rmdir()
    assert _notes(lambda: load_image_folder(tmp_path / "s", cache=False))[1] == []
    # beside the mixed-size note it is a warning of its own (a new-user trial missed it at the end of that line)
    rgb(root / "dog" / "big.png", 12, 12, 50)
    _, notes = _notes(lambda: load_image_folder(root, cache=False))
    assert len(notes) == 2 and "sizes" in notes[0] and notes[1].startswith(f"{root}: class folder holds no image")


def test_target_size_rule():
    assert target_size([(32, 32)] * 3, None) == (32, 32)  # uniform: kept
    assert target_size([(10, 10), (10, 10), (500, 900)], None) == (10, 10)  # one giant photo does not win
    assert target_size([(10, 20), (30, 40)], None) == (20, 30)  # even count: mean of the middle two
    assert target_size([(10, 20), (30, 40)], (7, 9)) == (7, 9)  # a set size always wins


def test_image_size_setting_resizes_everything_and_keys_the_cache(mixed, tmp_path):
    assert load_dataset(f"folder:{mixed}", image_size=16).train.x.shape == (5, 16, 16, 3)
    assert load_dataset(f"folder:{mixed}", image_size=[8, 12]).train.x.shape == (5, 8, 12, 3)
    assert load_dataset(f"folder:{mixed}", image_size=16).train.x.shape == (5, 16, 16, 3)  # not the 8x12 cache
    # a uniform folder keeps its size unless told otherwise
    rgb(tmp_path / "uni" / "a" / "1.png", 6, 7, 1)
    rgb(tmp_path / "uni" / "b" / "2.png", 6, 7, 2)
    assert load_dataset(f"folder:{tmp_path / 'uni'}").train.x.shape == (2, 6, 7, 3)
    assert load_dataset(f"folder:{tmp_path / 'uni'}", image_size=[3, 4]).train.x.shape == (2, 3, 4, 3)
    # other image sources are resized too; feature tables refuse the setting
    np.savez(tmp_path / "imgs.npz", x=np.zeros((4, 10, 10, 3), np.uint8), y=[0, 1, 0, 1])
    assert load_dataset(f"npz:{tmp_path / 'imgs.npz'}", image_size=5).train.x.shape == (4, 5, 5, 3)
    with pytest.raises(DataError, match=r"data.image_size=\[5, 5\] but digits holds feature rows"):
        load_dataset("digits", image_size=5)


@pytest.mark.parametrize("value", ["0", "[8]", "big", "[8,0]"])
def test_bad_image_size_exits_2_before_decoding(mixed, tmp_path, capsys, value):
    code = main(["train", "--dataset", f"folder:{mixed}", "--out", str(tmp_path / "r"), *QUICK,
                 f"data.image_size={value}"])
    err = capsys.readouterr().err
    assert code == 2 and "data.image_size=" in err and "[height, width]" in err and "Traceback" not in err
    assert not (tmp_path / "cache" / "folders").exists()  # refused before any image was decoded


def test_train_and_audit_on_a_mixed_folder_from_the_command_line(mixed, tmp_path, capsys):
    for k in range(3):  # a few more per class, so that 2 folds have examples of each
        rgb(mixed / "a" / f"x{k}.png", 12 + k, 14, 30 + k)
        rgb(mixed / "b" / f"y{k}.png", 44, 52 + k, 150 + k)
    out = tmp_path / "run"
    assert main(["train", "--dataset", f"folder:{mixed}", "--out", str(out), *QUICK]) == 0
    err = capsys.readouterr().err
    assert "noisyfit train: warning: " in err and "resized to the median" in err and "Traceback" not in err
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["class_names"] == ["a", "b"] and results["data"]["num_train"] == 11
    assert results["config"]["data"]["image_size"] is None
    audit = tmp_path / "audit"
    assert main(["audit", f"folder:{mixed}", "--folds", "2", "--out", str(audit), "data.image_size=[8,8]",
                 *QUICK]) == 0
    summary = json.loads((audit / "summary.json").read_text())
    assert summary["num_examples"] == 11 and np.load(audit / "pred_probs.npy").shape == (11, 2)
    assert "<img" in (audit / "report.html").read_text()
    capsys.readouterr()
    # the default detector's audit loads the folder twice (its run, then the report's thumbnails): one warning
    assert main(["audit", f"folder:{mixed}", "--out", str(tmp_path / "audit2"), *QUICK]) == 0
    assert capsys.readouterr().err.count("resized to the median") == 1
