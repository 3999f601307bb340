"""Dataset registry, real CIFAR-10 JPEG order and CIFAR-N label sets, digits, LabeledData checks.

Tests on the offline data in ../shared/data are skipped when it is absent. The CIFAR JPEG decode
(~5 s) is cached under the user cache dir, so later runs load it in about a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from noisyfit.data import DataError, DatasetSplits, LabeledData, list_datasets, load_dataset
from noisyfit.data import paths, sources
from noisyfit.data.cifar10_jpeg import CIFAR10_CLASSES, load_cifar10_jpeg, restore_order
from noisyfit.data.cifarn import with_cifar_n_labels

DATA = paths.resolve_data_dir(None)
HAVE_JPEG = DATA is not None and all(
    (DATA / f).is_file()
    for f in ("cifar10-jpeg.tar.gz", "cifar10_lossless_partial.npz", "cifar-n/CIFAR-10_human.pt")
)
needs_data = pytest.mark.skipif(not HAVE_JPEG, reason="offline CIFAR data (../shared/data) not found")


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of two uint8 image stacks."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(axis=1)
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12))


# ------------------------------------------------------------------------------ real CIFAR data
@pytest.fixture(scope="module")
def cifar10_jpeg() -> DatasetSplits:
    return load_cifar10_jpeg(DATA, progress=False)


@pytest.fixture(scope="module")
def lossless():
    with np.load(DATA / "cifar10_lossless_partial.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("split", ["train", "test"])
def test_jpeg_archive_restored_to_original_order(split, cifar10_jpeg, lossless):
    data = getattr(cifar10_jpeg, split)
    idx, x_ref, y_ref = lossless[f"{split}_idx"], lossless[f"x_{split}"], lossless[f"y_{split}"]
    assert data.x.shape == ((50000 if split == "train" else 10000), 32, 32, 3) and data.x.dtype == np.uint8
    assert data.class_names == CIFAR10_CLASSES
    assert data.name == f"cifar10-jpeg/{split}"
    aligned = np.median(psnr(data.x[idx], x_ref))
    shifted = np.median(psnr(data.x[(idx + 1) % len(data)], x_ref))
    assert aligned > 25, aligned
    assert shifted < 15, shifted
    np.testing.assert_array_equal(data.labels[idx], y_ref)
    if split == "test":
        np.testing.assert_array_equal(data.labels, lossless["y_test_full"])
    # ids name the file a position came from: its class folder matches the label
    assert all(data.ids[i].split("/")[1] == CIFAR10_CLASSES[data.labels[i]] for i in idx[:50])


@pytest.mark.slow
@pytest.mark.parametrize("label_set, rate", [("aggre", 0.0901), ("random1", 0.1723), ("rand2", 0.1812),
                                             ("random3", 0.1764), ("worst", 0.4021)])
@needs_data
def test_cifar10n_noise_rates(label_set, rate, cifar10_jpeg):
    train = with_cifar_n_labels(cifar10_jpeg.train, "cifar10n", label_set, DATA)
    assert abs(train.noise_rate - rate) < 5e-5  # to 0.01 %
    np.testing.assert_array_equal(train.true_labels, cifar10_jpeg.train.labels)
    assert set(train.extra_labels) == {"random1", "random2", "random3", "aggre", "worst"}
    assert train.ids == cifar10_jpeg.train.ids and train.x is cifar10_jpeg.train.x


@pytest.mark.slow
@needs_data
def test_load_dataset_cifar10n_uses_clean_test_set(cifar10_jpeg):
    splits = load_dataset("cifar10n-worst", str(DATA))
    assert splits.train.name == "cifar10n-worst/train"
    assert abs(splits.train.noise_rate - 0.4021) < 5e-5
    np.testing.assert_array_equal(splits.test.labels, cifar10_jpeg.test.labels)
    assert splits.test.true_labels is None and splits.test.name == "cifar10-jpeg/test"
    # the data dir holds no official python batches, so cifar10 says it came from the JPEGs
    assert load_dataset("cifar10", DATA).train.name == "cifar10-jpeg/train"


@pytest.mark.slow
@needs_data
def test_cifar_n_order_mismatch_is_caught(cifar10_jpeg):
    shifted = cifar10_jpeg.train.subset(np.roll(np.arange(50000), 1))
    with pytest.raises(DataError, match="order mismatch"):
        with_cifar_n_labels(shifted, "cifar10n", "aggre", DATA)


@needs_data
def test_cifar100n_without_images_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("NOISYFIT_CACHE_DIR", str(tmp_path))  # no earlier download can be found
    with pytest.raises(DataError, match=r"cifar-100-python.*--download"):
        load_dataset("cifar100n-noisy", DATA)


# ------------------------------------------------------------------------------ order rule
def test_restore_order_rule_on_toy_data():
    # files in folder order: class 0 -> a0, a1; class 1 -> b0, b1, b2
    x = np.arange(5, dtype=np.uint8).reshape(5, 1).repeat(4, axis=1)
    folder = LabeledData(x=x, labels=[0, 0, 1, 1, 1], class_names=["a", "b"],
                         ids=["a0", "a1", "b0", "b1", "b2"])
    restored = restore_order(folder, np.array([1, 0, 1, 1, 0]), "toy")
    assert restored.ids == ["b0", "a0", "b1", "b2", "a1"]
    np.testing.assert_array_equal(restored.labels, [1, 0, 1, 1, 0])
    with pytest.raises(DataError, match="class 'a' has 2 files"):
        restore_order(folder, np.array([0, 0, 0, 1, 1]), "toy")


# ------------------------------------------------------------------------------ digits
def test_digits_shapes_and_determinism():
    a, b = load_dataset("digits"), load_dataset("DIGITS")
    assert a.train.x.shape == (1347, 64) and a.test.x.shape == (450, 64)
    assert a.train.x.dtype == np.float32 and 0.0 <= a.train.x.min() and a.train.x.max() <= 1.0
    assert a.train.class_names == [str(i) for i in range(10)]
    np.testing.assert_array_equal(a.train.x, b.train.x)
    assert a.test.ids == b.test.ids
    assert not set(a.train.ids) & set(a.test.ids)
    # stratified: every class keeps ~25 % of its examples in the test split
    frac = np.bincount(a.test.labels) / (np.bincount(a.test.labels) + np.bincount(a.train.labels))
    assert np.all(np.abs(frac - 0.25) < 0.02)


# ------------------------------------------------------------------------------ registry
def test_unknown_name_lists_valid_names(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("imagenet")
    msg = str(err.value)
    for valid in ("cifar10", "cifar100", "cifar10n-worst", "cifar100n-noisy", "digits", "folder:PATH",
                  "csv:PATH", "npz:PATH"):
        assert valid in msg
    with pytest.raises(DataError, match="unknown dataset 'cifar10n-bogus'.*cifar10n-aggre"):
        load_dataset("cifar10n-bogus")
    assert "A path" not in msg  # no path hint for a name
    # a path that does not exist: said first (a typo), not after the list of names
    with pytest.raises(DataError, match=r"^'/no/such': no such file or folder \(nor a data set name: cifar10"):
        load_dataset("/no/such")
    # an existing path without its kind: the prefix it needs, else the prefixes that read files
    here = Path(__file__).parent
    with pytest.raises(DataError, match=rf"'{here}' is a file or folder, not a data set name: give its kind in "
                                        rf"front, --dataset folder:{here}$"):
        load_dataset(str(here))
    table = tmp_path / "t.csv"
    table.write_text("f,label\n1,a\n")
    with pytest.raises(DataError, match=rf"--dataset csv:{table} \(or list:{table} if it lists image files\)$"):
        load_dataset(str(table))
    with pytest.raises(DataError, match=r"unknown dataset '.*'; .*A path needs its kind in front: folder:PATH"):
        load_dataset(__file__)


def test_an_empty_label_cell_names_the_column_and_row(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("f0,label\n1.0,a\n2.0,b\n3.0,\n4.0,a\n")
    with pytest.raises(DataError, match="the label column 'label' is empty in line 4; every row needs a label"):
        load_dataset(f"csv:{path}")
    assert set(list_datasets()) >= {"cifar10", "cifar10n-random1", "digits"}


def test_missing_data_dir_says_how_to_set_it(monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "resolve_data_dir", lambda _d: None)
    monkeypatch.setenv("NOISYFIT_CACHE_DIR", str(tmp_path))
    for name in ("cifar10", "cifar10n-aggre", "cifar100"):
        with pytest.raises(DataError, match=r"--data-dir.*NOISYFIT_DATA_DIR"):
            load_dataset(name)


def test_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("NOISYFIT_DATA_DIR", str(tmp_path / "env"))
    assert paths.resolve_data_dir(str(tmp_path / "x")) == tmp_path / "x"
    assert paths.resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("NOISYFIT_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    (tmp_path / "shared" / "data").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")  # ../shared/data relative to the working directory
    assert paths.resolve_data_dir(None) == (tmp_path / "shared" / "data").resolve()
    monkeypatch.setenv("NOISYFIT_CACHE_DIR", str(tmp_path / "c"))
    assert paths.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


# ------------------------------------------------------------------------------ LabeledData checks
def test_labeled_data_validation_names_the_field():
    x = np.zeros((3, 2), np.float32)
    with pytest.raises(DataError, match=r"labels\[1\] = 5 is outside \[0, 2\)"):
        LabeledData(x=x, labels=[0, 5, 1], class_names=["a", "b"])
    with pytest.raises(DataError, match=r"true_labels\[0\] = -1"):
        LabeledData(x=x, labels=[0, 1, 1], true_labels=[-1, 0, 0], class_names=["a", "b"])
    with pytest.raises(DataError, match="2 labels for 3 examples"):
        LabeledData(x=x, labels=[0, 1], class_names=["a", "b"])
    with pytest.raises(DataError, match="true_labels has 2 entries"):
        LabeledData(x=x, labels=[0, 1, 1], true_labels=[0, 1], class_names=["a", "b"])
