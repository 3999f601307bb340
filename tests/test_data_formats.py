"""File formats on tiny data written in tmp_path: official CIFAR pickles, image folders, CSV, npz."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noisyfit.data import DataError, DatasetSplits, LabeledData, load_dataset
from noisyfit.data import cifar
from noisyfit.data.cifar import download_cifar, read_cifar
from noisyfit.data.folder import load_image_folder
from noisyfit.data.tabular import load_csv, load_npz, save_npz


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test gets its own cache so nothing leaks between tests or into ~/.cache."""
    monkeypatch.setenv("NOISYFIT_CACHE_DIR", str(tmp_path / "cache"))


def make_tar(src: Path, dest: Path, arcname: str) -> Path:
    mode = "w:gz" if dest.name.endswith(".gz") else "w"
    with tarfile.open(dest, mode) as tf:
        tf.add(src, arcname=arcname)
    return dest


# ------------------------------------------------------------------------------ official CIFAR
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_fake_cifar10(root: Path, per_batch: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Tiny CIFAR-10 in the official layout; returns (all train rows [N, 3072], train labels)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, size=per_batch).tolist()
        # bytes keys and protocol 2, as in the official Python 2 files
        batch = {b"batch_label": b"fake", b"data": data, b"labels": y} if name == "data_batch_1" \
            else {"data": data, "labels": y}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2 if name == "data_batch_1" else 4))
        if name != "test_batch":
            rows.append(data)
            labels += y
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CLASSES]}))
    return np.concatenate(rows), np.array(labels)


def test_official_cifar_folder_and_archive(tmp_path):
    rows, labels = write_fake_cifar10(tmp_path)
    splits = load_dataset("cifar10", tmp_path)  # folder found in the data dir
    train = splits.train
    assert train.name == "cifar10-python/train" and splits.test.name == "cifar10-python/test"
    assert train.x.shape == (20, 32, 32, 3) and train.x.dtype == np.uint8 and len(splits.test) == 4
    assert train.class_names == CLASSES
    np.testing.assert_array_equal(train.labels, labels)
    # channel-major rows -> NHWC: pixel (h, w, c) is at c*1024 + h*32 + w
    assert train.x[5, 2, 7, 1] == rows[5, 1 * 1024 + 2 * 32 + 7]
    np.testing.assert_array_equal(train.x[3].transpose(2, 0, 1).reshape(-1), rows[3])
    assert train.ids[:2] == ["train/00000", "train/00001"]

    (tmp_path / "a").mkdir()
    archive = make_tar(tmp_path / "cifar-10-batches-py", tmp_path / "a" / "cifar-10-python.tar.gz",
                       "cifar-10-batches-py")
    from_tar = read_cifar(archive, "cifar10", check_md5=False)
    np.testing.assert_array_equal(from_tar.train.x, train.x)
    np.testing.assert_array_equal(from_tar.test.labels, splits.test.labels)

    # md5 is checked by default: a fake archive is not the official one
    with pytest.raises(DataError, match=r"md5 [0-9a-f]{32} does not match the official "
                                        r"c58f30108f718f92721af3b95e74349a.*download"):
        load_dataset("cifar10", tmp_path / "a")


def test_official_cifar100_keys(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 6), ("test", 2)):
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "fine_labels": [0, 1] * (n // 2),
                 "coarse_labels": [0] * n}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": ["apple", "bear"],
                                                "coarse_label_names": ["x"]}))
    splits = load_dataset("cifar100", tmp_path)
    assert splits.train.class_names == ["apple", "bear"] and len(splits.train) == 6
    assert splits.test.name == "cifar100-python/test"


def test_cifar_pickle_that_runs_code_is_refused(tmp_path):
    write_fake_cifar10(tmp_path)
    evil = tmp_path / "cifar-10-batches-py" / "test_batch"
    evil.write_bytes(pickle.dumps({"data": os.system}))  # would import posix.system
    with pytest.raises(DataError, match="test_batch.*not a readable CIFAR pickle"):
        read_cifar(tmp_path / "cifar-10-batches-py")


def test_cifar_missing_batch_is_named(tmp_path):
    write_fake_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing 'data_batch_3'"):
        read_cifar(tmp_path / "cifar-10-batches-py")


def test_download_md5_mismatch_is_reported_and_removed(tmp_path, monkeypatch):
    class FakeResponse(io.BytesIO):
        headers = {"Content-Length": "9"}

    urls = []
    monkeypatch.setattr(cifar.urllib.request, "urlopen",
                        lambda url, timeout: urls.append(url) or FakeResponse(b"not cifar"))
    with pytest.raises(DataError, match="md5 .* expected c58f30108f718f92721af3b95e74349a"):
        download_cifar("cifar10", tmp_path / "dl")
    assert urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert list((tmp_path / "dl").iterdir()) == []  # no half-file left behind


# ------------------------------------------------------------------------------ image folders
def png(path: Path, value: int, size: tuple[int, int] = (4, 3)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


@pytest.fixture
def image_tree(tmp_path) -> Path:
    root = tmp_path / "mydata"
    png(root / "train" / "dog" / "a.png", 30)
    png(root / "train" / "cat" / "b.png", 20)
    png(root / "train" / "cat" / "a.png", 10)
    png(root / "test" / "dog" / "z.png", 50)
    png(root / "test" / "cat" / "y.png", 40)
    (root / "train" / "notes.txt").write_text("not an image: ignored")
    return root


@pytest.mark.parametrize("form", ["dir", "tar", "tar.gz"])
def test_image_folder_order_ids_and_classes(image_tree, tmp_path, form):
    path = image_tree if form == "dir" else make_tar(image_tree, tmp_path / f"mydata.{form}", "mydata")
    splits = load_image_folder(path)
    train, test = splits.train, splits.test
    assert train.class_names == ["cat", "dog"]
    assert train.ids == ["train/cat/a.png", "train/cat/b.png", "train/dog/a.png"]
    np.testing.assert_array_equal(train.labels, [0, 0, 1])
    assert train.x.shape == (3, 3, 4, 3) and train.x.dtype == np.uint8
    np.testing.assert_array_equal(train.x[:, 0, 0, 0], [10, 20, 30])
    assert test.ids == ["test/cat/y.png", "test/dog/z.png"] and train.name == "mydata/train"
    # explicit class order changes labels and example order
    flipped = load_image_folder(path, class_names=["dog", "cat"]).train
    assert flipped.ids == ["train/dog/a.png", "train/cat/a.png", "train/cat/b.png"]
    np.testing.assert_array_equal(flipped.labels, [0, 1, 1])
    # the same through the registry
    assert load_dataset(f"folder:{path}").train.ids == train.ids


def test_image_folder_without_splits_is_all_train(tmp_path):
    png(tmp_path / "d" / "b_class" / "1.png", 1)
    png(tmp_path / "d" / "a_class" / "2.png", 2)
    splits = load_image_folder(tmp_path / "d")
    assert splits.test is None
    assert splits.train.ids == ["a_class/2.png", "b_class/1.png"]
    assert splits.train.class_names == ["a_class", "b_class"]


def test_image_folder_cache_is_reused_and_invalidated(image_tree, tmp_path):
    first = load_image_folder(image_tree).train
    assert list((tmp_path / "cache" / "folders").rglob("train.npy"))
    again = load_image_folder(image_tree).train
    np.testing.assert_array_equal(first.x, again.x)
    png(image_tree / "train" / "cat" / "a.png", 99)  # edit a file: the cache must notice
    os.utime(image_tree / "train" / "cat" / "a.png", ns=(1, 1))
    assert load_image_folder(image_tree).train.x[0, 0, 0, 0] == 99


@pytest.mark.parametrize("form", ["dir", "tar.gz"])
def test_every_unreadable_image_is_named_in_one_message(image_tree, tmp_path, form):
    (image_tree / "train" / "dog" / "bad.png").write_bytes(b"\x89PNG this is not a png")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(image_tree / "test" / "cat" / "cut.png")
    full = (image_tree / "test" / "cat" / "cut.png").read_bytes()
    (image_tree / "test" / "cat" / "cut.png").write_bytes(full[:len(full) // 2])  # header fine, pixels cut
    for k in range(12):
        (image_tree / "train" / "cat" / f"junk{k:02d}.jpg").write_bytes(b"not a jpeg")
    path = image_tree if form == "dir" else make_tar(image_tree, tmp_path / "m.tar.gz", "mydata")
    with pytest.raises(DataError) as err:
        load_image_folder(path)
    msg = str(err.value)
    # 14 bad files of 19, listed in example order up to 10, then counted; the truncated one (found only when
    # decoding) is collected with the ones whose header is broken
    assert "cannot decode 14 of 19 images: 'test/cat/cut.png' (image file is truncated" in msg
    assert "'train/cat/junk00.jpg' (not an image Pillow can read)" in msg
    assert "'train/cat/junk08.jpg'" in msg and "'train/cat/junk09.jpg'" not in msg
    assert "and 4 more" in msg and "replace them" in msg


def test_missing_image_is_named(image_tree):
    (image_tree / "train" / "dog" / "gone.png").symlink_to(image_tree / "nowhere.png")
    with pytest.raises(DataError, match=r"cannot decode image 'train/dog/gone.png' \(missing\)"):
        load_image_folder(image_tree)


def test_image_outside_class_folder_is_named(image_tree):
    png(image_tree / "train" / "loose.png", 1)
    with pytest.raises(DataError, match="'train/loose.png' is not inside a class folder"):
        load_image_folder(image_tree)


# ------------------------------------------------------------------------------ CSV
def test_csv_features_string_labels_and_ids(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("id,f1,f2,label,true_label\nr1,0.5,1,dog,dog\nr2,1.5,-2,cat,dog\nr3,2.5,3e1,bird,bird\n")
    splits = load_csv(f)
    d = splits.train
    assert d.class_names == ["bird", "cat", "dog"] and splits.test is None
    np.testing.assert_array_equal(d.labels, [2, 1, 0])
    np.testing.assert_array_equal(d.true_labels, [2, 2, 0])
    np.testing.assert_allclose(d.x, [[0.5, 1], [1.5, -2], [2.5, 30]])
    assert d.x.dtype == np.float32 and d.ids == ["r1", "r2", "r3"] and d.noise_rate == pytest.approx(1 / 3)


def test_csv_integer_labels_custom_column_and_split(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("a,target,split\n1,0,train\n2,2,train\n3,1,test\n")
    splits = load_dataset(f"csv:{f}", label_column="target")
    assert splits.train.class_names == ["0", "1", "2"] and splits.train.ids == ["row0", "row1"]
    np.testing.assert_array_equal(splits.test.labels, [1])
    np.testing.assert_allclose(splits.test.x, [[3.0]])


def test_csv_errors_name_file_column_and_fix(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("f1,f2,y\n1,2,0\n")
    with pytest.raises(DataError,
                       match=r"bad.csv: no label column 'label' \(columns: f1, f2, y\).*label_column"):
        load_csv(f)
    f.write_text("f1,color,label\n1,2,0\n3,red,1\n")
    with pytest.raises(DataError,
                       match=r"bad.csv: column 'color' must be numeric but data row 2 is 'red'.*one-hot"):
        load_csv(f)


def test_csv_headers_and_cells_a_table_tool_writes_are_refused_with_the_fix(tmp_path):
    # a user trial: each of these trained in silence on the wrong columns, or failed only at the first NaN loss
    f = tmp_path / "t.csv"
    f.write_text(",f1,label\n0,0.5,a\n1,1.5,b\n")  # df.to_csv(path) without index=False
    with pytest.raises(DataError, match=r"t.csv: column 1 of the header has no name \(a first column without a "
                                        r"name is usually a pandas index: write the file with "
                                        r"df.to_csv\(path, index=False\)\)"):
        load_csv(f)
    f.write_text("f1,f2,f2,label\n1,2,3,a\n4,5,6,b\n")  # the second f2 had replaced the first
    with pytest.raises(DataError, match=r"columns 2 and 3 are both named 'f2'; give each column its own name"):
        load_csv(f)
    for cell in ("nan", "NaN", " inf", "-Infinity"):
        f.write_text(f"f1,f2,label\n1,2,a\n4,{cell},b\n")
        with pytest.raises(DataError, match=rf"column 'f2' must be numeric but data row 2 is '{cell.strip()}', "
                                            "not a number"):
            load_csv(f)
    f.write_text("f1,f2,label\n1,2,a\n4,-1e39,b\n")  # a number float32 cannot hold had loaded as -inf
    with pytest.raises(DataError, match="column 'f2' must be numeric but data row 2 is '-1e39', beyond float32's "
                                        "range"):
        load_csv(f)
    f.write_text("f1,f2,label\n1, ,a\n")
    with pytest.raises(DataError, match="column 'f2' must be numeric but data row 1 is empty"):
        load_csv(f)
    f.write_text("f1;f2;label\n1;2;a\n4;5;b\n")
    with pytest.raises(DataError, match=r"no label column 'label' \(columns: f1;f2;label\).*separate its columns "
                                        r"with ';'"):
        load_csv(f)
    # the feature columns' names are kept, in the file's order, spaces around numbers and labels as before
    f.write_text("id,f2,f1,label\nr1, 0.5 ,1, a\nr2,1.5,2,b \n")
    d = load_csv(f).train
    assert d.feature_names == ["f2", "f1"] and d.class_names == ["a", "b"]
    np.testing.assert_allclose(d.x, [[0.5, 1], [1.5, 2]])
    assert d.subset(np.array([1])).feature_names == ["f2", "f1"]
    with pytest.raises(DataError, match=r"3 feature names for inputs of shape \[2, 2\]"):
        LabeledData(d.x, d.labels, d.class_names, feature_names=["a", "b", "c"])


def test_annotator_columns_may_skip_items_and_new_values_are_warned_about(tmp_path):
    # a labelling team's trial: an annotator's empty cell stopped the audit ("every row needs a label"), -1 in an
    # npz became a class "-1" (119 items relabelled to it), and "Cat" beside "cat" a sixth class, in silence
    from noisyfit.data.labels import DataWarning

    f = tmp_path / "crowd.csv"
    f.write_text("f,label,extra_a,extra_b\n1,cat,cat,\n2,dog,Cat,dog\n3,cat,,cat\n4,dog,dog,-1\n")
    with pytest.warns(DataWarning, match=r"annotator column 'extra_a' has label\(s\) 'Cat' that no other label "
                                         r"column has \(1 row\(s\)\): they became classes of their own"):
        d = load_csv(f).train
    assert d.class_names == ["Cat", "cat", "dog"]
    np.testing.assert_array_equal(d.extra_labels["a"], [1, 0, -1, 2])  # -1: not annotated
    np.testing.assert_array_equal(d.extra_labels["b"], [-1, 2, 1, -1])
    (tmp_path / "crowd.classes.txt").write_text("cat\ndog\n")  # declared classes refuse it, naming the column
    with pytest.raises(DataError, match=r"line 3 in column 'extra_a': 'Cat'"):
        load_csv(f)
    (tmp_path / "crowd.classes.txt").unlink()
    f.write_text("f,label,extra_a\n1,-1,-1\n2,1,1\n3,1,\n")  # labels -1/1: there -1 is a class
    d = load_csv(f).train
    assert d.class_names == ["-1", "1"] and d.extra_labels["a"].tolist() == [0, 1, -1]
    f.write_text("f,label,extra_a\n1,a,a\n2,,b\n")  # the given label itself is never optional
    with pytest.raises(DataError, match="the label column 'label' is empty"):
        load_csv(f)
    arrays = dict(x=np.zeros((4, 2), np.float32), y=np.array([0, 1, 2, 1]), extra_a=np.array([0, -1, 2, 1]),
                  extra_b=np.array([np.nan, 1, 2, 0]))
    np.savez(tmp_path / "c.npz", **arrays)
    d = load_npz(tmp_path / "c.npz").train
    assert d.class_names == ["0", "1", "2"]
    assert d.extra_labels["a"].tolist() == [0, -1, 2, 1] and d.extra_labels["b"].tolist() == [-1, 1, 2, 0]
    np.savez(tmp_path / "d.npz", **arrays, class_names=np.array(["a", "b", "c"]))
    assert load_npz(tmp_path / "d.npz").train.extra_labels["b"].tolist() == [-1, 1, 2, 0]
    np.savez(tmp_path / "e.npz", **{**arrays, "extra_a": np.array([0, 5, 2, 1])}, class_names=np.array(["a", "b", "c"]))
    with pytest.raises(DataError, match=r"extra_a\[1\] = 5 is outside \[0, 3\)"):
        load_npz(tmp_path / "e.npz")


def test_a_class_without_training_rows_says_where_its_rows_went():
    from noisyfit.engine.run_data import _check_classes_present

    full = LabeledData(np.zeros((7, 2), np.float32), [0, 0, 1, 1, 2, 0, 2], ["a", "b", "rare"], name="t/train")
    # one 'rare' row in the validation split, the other outside the subset (a user trial: a one-row class in the
    # validation split had been blamed on the test split and the class list)
    kw = dict(val_index=np.array([4]), subset=np.array([0, 1, 2, 3, 4, 5]), dropped=None)
    with pytest.raises(DataError, match=r"^t/train: class\(es\) 'rare' have no training example; their rows: 1 of "
                                        r"'rare' in the validation split; 1 of 'rare' outside data.train_subset\. Add "
                                        r"examples of them, or use train without a hold-out \(data.val_fraction=0\) "
                                        r"or with a larger one or a larger data.train_subset, or none\.$"):
        _check_classes_present(full.subset(np.array([0, 1, 2, 3, 5])), full, **kw)
    # both dropped by a cleaned label file: only that is said (the hold-out is not the cause)
    dropped = np.array([False, False, False, False, True, False, True])
    with pytest.raises(DataError, match=r"their rows: 2 of 'rare' dropped by the label file\. Add examples of them, "
                                        r"or use a label file that keeps them\.$"):
        _check_classes_present(full.subset(np.arange(4)), full, val_index=np.array([5]), subset=None, dropped=dropped)
    # a class in the declared list only: the former message, which was right there
    declared = LabeledData(np.zeros((4, 2), np.float32), [0, 0, 1, 1], ["a", "b", "c"], name="t/train")
    with pytest.raises(DataError, match=r"no training example has class\(es\) 'c' of the 3 classes"):
        _check_classes_present(declared, declared, val_index=np.array([], int), subset=None, dropped=None)
    _check_classes_present(full, full, val_index=np.array([], int), subset=None, dropped=None)  # all there


# ------------------------------------------------------------------------------ npz / npy
def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    train = LabeledData(x=rng.random((6, 3), dtype=np.float32), labels=[0, 1, 2, 0, 1, 2],
                        true_labels=[0, 1, 2, 0, 1, 1], class_names=["a", "b", "c"],
                        ids=[f"s{i}" for i in range(6)], extra_labels={"ann1": np.array([0, 1, 2, 2, 1, 2])})
    test = LabeledData(x=rng.random((2, 3), dtype=np.float32), labels=[2, 0], class_names=["a", "b", "c"])
    path = save_npz(DatasetSplits(train, test), tmp_path / "rt")
    back = load_dataset(f"npz:{path}")
    for a, b in ((train, back.train), (test, back.test)):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert a.class_names == b.class_names
    np.testing.assert_array_equal(back.train.true_labels, train.true_labels)
    np.testing.assert_array_equal(back.train.extra_labels["ann1"], train.extra_labels["ann1"])
    assert back.train.ids == train.ids and back.test.true_labels is None


def test_npz_plain_arrays_and_npy_folder(tmp_path):
    x, y = np.zeros((4, 5, 5), np.uint8), np.array([0, 1, 3, 1])
    np.savez(tmp_path / "p.npz", x=x, labels=y)
    d = load_npz(tmp_path / "p.npz").train
    # no class_names: the classes are the label values that occur (no empty class '2')
    assert d.x.shape == (4, 5, 5, 1) and d.class_names == ["0", "1", "3"]
    np.testing.assert_array_equal(d.labels, [0, 1, 2, 1])
    (tmp_path / "arr").mkdir()
    np.save(tmp_path / "arr" / "x.npy", np.ones((3, 2)))
    np.save(tmp_path / "arr" / "y.npy", np.array([0, 1, 1]))
    (tmp_path / "arr" / "class_names.txt").write_text("no\nyes\n")
    d = load_npz(tmp_path / "arr").train
    assert d.class_names == ["no", "yes"] and d.x.dtype == np.float32
    np.savez(tmp_path / "q.npz", inputs=x)
    with pytest.raises(DataError, match="needs arrays 'x' and 'y'"):
        load_npz(tmp_path / "q.npz")
