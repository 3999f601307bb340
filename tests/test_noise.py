"""Synthetic label noise: realised rates, transition matrices, determinism, errors and noise files."""

from __future__ import annotations

import numpy as np
import pytest

from noisyfit.data.labeled import DataError, LabeledData
from noisyfit.data.noise import (
    CIFAR10_ASYM_MAP,
    NoiseResult,
    apply_noise,
    asymmetric_cifar10,
    attach_noisy_labels,
    cifar100_superclass,
    estimate_from_labels,
    from_transition,
    groups_from_coarse_labels,
    instance_dependent,
    load_noisy_labels,
    make_noise,
    noise_transition,
    pair_flip,
    parse_noise_spec,
    save_noisy_labels,
    symmetric_flip,
    symmetric_resample,
)


def balanced(num_classes: int, per_class: int) -> np.ndarray:
    """Balanced labels in shuffled order (so nothing can rely on sorted input)."""
    y = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng(123).permutation(y)


def random_matrix(c: int, seed: int = 0) -> np.ndarray:
    t = np.random.default_rng(seed).random((c, c)) + np.eye(c) * c
    return t / t.sum(axis=1, keepdims=True)


Y10 = balanced(10, 1000)  # 10k CIFAR-10-like labels
Y20K = balanced(10, 2000)  # 20k for transition comparisons


# ------------------------------------------------------------------------------------ realised rates
def test_sym_exact_count_and_never_true_class():
    res = symmetric_flip(Y10, 0.4, 10, seed=0)
    assert res.flipped.sum() == round(0.4 * len(Y10))
    assert res.noise_rate == pytest.approx(0.4, abs=1e-12)
    # Spread over classes in proportion to their size: 400 flips in each class of 1000.
    assert np.all(np.bincount(Y10[res.flipped], minlength=10) == 400)
    assert res.spec == "sym:0.4"
    assert res.info["exact"] is True


def test_sym_exact_count_with_uneven_classes():
    y = np.random.default_rng(5).integers(0, 7, size=9999)
    res = symmetric_flip(y, 0.37, 7, seed=3)
    assert res.flipped.sum() == round(0.37 * 9999)
    per_class = np.bincount(y[res.flipped], minlength=7)
    target = 0.37 * np.bincount(y, minlength=7)
    assert np.all(np.abs(per_class - target) < 1)  # floor or ceil of r·n_c


def test_sym_bernoulli_rate_close():
    res = symmetric_flip(Y10, 0.4, 10, seed=0, exact=False)
    assert res.noise_rate == pytest.approx(0.4, abs=0.02)
    assert res.info["exact"] is False


def test_symall_effective_rate():
    res = symmetric_resample(Y10, 0.4, 10, seed=0)
    assert res.noise_rate == pytest.approx(0.36, abs=0.015)
    assert res.info["resampled"] == 4000
    assert np.allclose(np.diag(res.transition), 1 - 0.4 + 0.4 / 10)
    assert res.expected_noise_rate == pytest.approx(0.36)
    # the alias parses to the same kind and gives the same labels
    alias = make_noise(Y10, "uniform:0.4", 10, seed=0)
    assert alias.spec == "symall:0.4"
    np.testing.assert_array_equal(alias.labels, res.labels)


def test_asym_cifar10_rate_and_only_mapped_pairs():
    res = asymmetric_cifar10(Y10, 0.4, seed=0)
    assert res.noise_rate == pytest.approx(0.4 * 5 / 10, abs=1e-12)
    off = res.realised_transition.copy()
    np.fill_diagonal(off, 0)
    nonzero = {(int(i), int(j)) for i, j in np.argwhere(off > 0)}
    assert nonzero == set(CIFAR10_ASYM_MAP.items())
    # untouched classes keep every label; cat and dog are swapped without cascades (no double flips)
    for k in (0, 1, 6, 7, 8):
        assert res.realised_transition[k, k] == 1.0
    assert res.realised_transition[3, 5] == pytest.approx(0.4)
    assert res.realised_transition[5, 3] == pytest.approx(0.4)


def test_asym_cifar10_bernoulli():
    res = asymmetric_cifar10(Y10, 0.4, seed=1, exact=False)
    assert res.noise_rate == pytest.approx(0.2, abs=0.02)


def test_cifar100_superclass_stays_in_blocks():
    y = balanced(100, 100)
    res = cifar100_superclass(y, 0.4, seed=0)
    f = res.flipped
    assert res.noise_rate == pytest.approx(0.4, abs=1e-12)
    assert np.all(res.labels[f] // 5 == y[f] // 5)  # same block of 5
    assert np.all(res.labels[f] == (y[f] // 5) * 5 + (y[f] % 5 + 1) % 5)  # next one, circularly
    # the dispatcher picks the superclass flip for 100 classes
    np.testing.assert_array_equal(make_noise(y, "asym:0.4", 100, seed=0).labels, res.labels)


def test_superclass_explicit_groups():
    groups = [[0, 3, 5], [1, 2], [4]]  # class 4 alone, classes 6 and 7 in no group: never flipped
    y = balanced(8, 500)
    res = cifar100_superclass(y, 0.3, seed=2, groups=groups, num_classes=8)
    pairs = {(int(a), int(b)) for a, b in zip(y[res.flipped], res.labels[res.flipped])}
    assert pairs == {(0, 3), (3, 5), (5, 0), (1, 2), (2, 1)}
    assert res.info["groups"] == groups
    fine = np.array([0, 1, 2, 3, 4, 5])
    coarse = np.array([1, 0, 1, 0, 1, 0])
    assert groups_from_coarse_labels(fine, coarse) == [[1, 3, 5], [0, 2, 4]]


def test_pairflip_rate_and_direction():
    res = pair_flip(Y10, 0.45, 10, seed=0)
    assert res.noise_rate == pytest.approx(0.45, abs=1e-12)
    assert np.all(res.labels[res.flipped] == (Y10[res.flipped] + 1) % 10)
    res_b = pair_flip(Y10, 0.45, 10, seed=0, exact=False)
    assert res_b.noise_rate == pytest.approx(0.45, abs=0.02)


def test_idn_rate_and_rows():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, size=5000)
    x = rng.normal(size=(5000, 4, 4, 2)).astype(np.float32)  # any [N, ...] shape is flattened
    res = instance_dependent(y, x, 0.4, 10, seed=0)
    assert res.noise_rate == pytest.approx(0.4, abs=0.03)
    assert res.spec == "idn:0.4"
    assert np.allclose(res.transition.sum(axis=1), 1.0)
    assert np.abs(res.transition - res.realised_transition).max() < 0.05
    # chunking does not change the result
    small = instance_dependent(y, x, 0.4, 10, seed=0, chunk_size=17)
    np.testing.assert_array_equal(small.labels, res.labels)
    assert instance_dependent(y, x, 0.0, 10, seed=0).noise_rate == 0.0


def test_idn_targets_depend_on_the_input():
    # One class, two kinds of input: the flip-target distribution must differ between them, since the
    # scores come from each input's own projection (class-conditional noise would give the same one).
    y = np.zeros(6000, dtype=np.int64)
    x = np.zeros((6000, 2))
    x[:3000, 0] = 1.0
    x[3000:, 1] = 1.0
    res = instance_dependent(y, x, 0.4, 10, seed=0)
    f = res.flipped
    assert not np.any(res.labels[f] == 0)
    hist_a = np.bincount(res.labels[:3000][f[:3000]], minlength=10) / f[:3000].sum()
    hist_b = np.bincount(res.labels[3000:][f[3000:]], minlength=10) / f[3000:].sum()
    assert 0.5 * np.abs(hist_a - hist_b).sum() > 0.15


def test_idn_on_images_via_apply_noise():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(2000, 8, 8, 3), dtype=np.uint8)
    data = LabeledData(x=x, labels=rng.integers(0, 10, size=2000), class_names=[str(i) for i in range(10)])
    noisy, res = apply_noise(data, "idn:0.4", seed=0)
    assert res.noise_rate == pytest.approx(0.4, abs=0.04)
    np.testing.assert_array_equal(noisy.true_labels, data.labels)


# ------------------------------------------------------------------------------------ nominal vs realised T
@pytest.mark.parametrize("spec", ["sym:0.4", "symall:0.4", "asym:0.4", "pairflip:0.45"])
@pytest.mark.parametrize("exact", [True, False])
def test_realised_transition_matches_nominal(spec, exact):
    res = make_noise(Y20K, spec, 10, seed=7, exact=exact)
    assert np.abs(res.realised_transition - res.transition).max() < 0.03
    assert np.allclose(res.transition.sum(axis=1), 1.0)


def test_matrix_realised_transition(tmp_path):
    t = random_matrix(10)
    res = from_transition(Y20K, t, seed=0)
    assert np.abs(res.realised_transition - res.transition).max() < 0.03
    path = tmp_path / "T.npy"
    np.save(path, t)
    res_file = make_noise(Y20K, f"matrix:{path}", 10, seed=0)
    assert res_file.spec == f"matrix:{path}"
    np.testing.assert_array_equal(res_file.labels, res.labels)


def test_matrix_zero_entries_never_sampled():
    t = np.zeros((4, 4))
    t[0, 0] = t[1, 2] = t[2, 3] = t[3, 3] = 1.0
    res = from_transition(np.repeat(np.arange(4), 500), t, seed=0)
    np.testing.assert_array_equal(res.realised_transition, t)


def test_noise_transition_helper():
    t = noise_transition("pairflip", 0.45, 5)
    assert t[4, 0] == pytest.approx(0.45) and t[4, 4] == pytest.approx(0.55)
    assert noise_transition("sym", 0.4, 10)[0, 1] == pytest.approx(0.4 / 9)


def test_estimate_from_labels_absent_class_row_zero():
    rate, t = estimate_from_labels(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 3)
    assert rate == 0.25
    np.testing.assert_allclose(t, [[0.5, 0.5, 0], [0, 1, 0], [0, 0, 0]])


# ------------------------------------------------------------------------------------ determinism
@pytest.mark.parametrize("spec", ["sym:0.3", "symall:0.3", "asym:0.3", "pairflip:0.3", "idn:0.3"])
def test_seeded_and_global_state_untouched(spec):
    feats = np.random.default_rng(9).normal(size=(len(Y10), 16))
    np.random.seed(1234)
    before = np.random.get_state()
    a = make_noise(Y10, spec, 10, seed=11, features=feats)
    b = make_noise(Y10, spec, 10, seed=11, features=feats)
    c = make_noise(Y10, spec, 10, seed=12, features=feats)
    after = np.random.get_state()
    np.testing.assert_array_equal(a.labels, b.labels)
    assert np.any(a.labels != c.labels)
    assert a.seed == 11
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]


def test_generator_seed_accepted():
    res = symmetric_flip(Y10, 0.2, 10, seed=np.random.default_rng(0))
    assert res.seed is None
    assert res.noise_rate == pytest.approx(0.2)


# ------------------------------------------------------------------------------------ specs and errors
def test_parse_noise_spec_forms():
    assert parse_noise_spec("sym:0.4") == ("sym", 0.4)
    assert parse_noise_spec(" SymAll : 0.5 ") == ("symall", 0.5)
    assert parse_noise_spec("uniform:0.2") == ("symall", 0.2)
    assert parse_noise_spec("pairflip:0.45") == ("pairflip", 0.45)
    assert parse_noise_spec("idn:0") == ("idn", 0.0)
    assert parse_noise_spec("matrix:some/dir/T.npy") == ("matrix", "some/dir/T.npy")


@pytest.mark.parametrize("spec, fragment", [
    ("sym", "expected KIND:RATE, e.g. 'sym:0.4'"),
    ("", "expected KIND:RATE"),
    ("sym:", "expected KIND:RATE"),
    ("sym:abc", "e.g. 'sym:0.4'"),
    ("sym:40%", "fraction"),
    ("gauss:0.3", "valid kinds: sym, symall, asym, pairflip, idn, matrix"),
    ("sym:1.0", "outside [0, 1)"),
    ("sym:-0.1", "outside [0, 1)"),
    ("sym:40", "'sym:0.4' means 40%"),
    ("sym:nan", "outside [0, 1)"),
    ("matrix:T.csv", "matrix:PATH.npy"),
])
def test_bad_specs(spec, fragment):
    with pytest.raises(DataError) as exc:
        parse_noise_spec(spec)
    assert fragment in str(exc.value)


def test_asym_on_7_classes_says_what_to_use():
    with pytest.raises(DataError) as exc:
        make_noise(balanced(7, 10), "asym:0.4", 7, seed=0)
    msg = str(exc.value)
    assert "only for 10 classes" in msg and "100" in msg
    assert "pairflip" in msg and "matrix:" in msg


def test_rate_out_of_range_in_functions():
    with pytest.raises(DataError, match=r"outside \[0, 1\)"):
        symmetric_flip(Y10, 1.0, 10, seed=0)
    with pytest.raises(DataError, match=r"outside \[0, 1\)"):
        pair_flip(Y10, -0.2, 10, seed=0)


def test_bad_matrix():
    rows_off = np.full((3, 3), 0.3)
    with pytest.raises(DataError) as exc:
        from_transition(np.array([0, 1, 2]), rows_off, seed=0)
    assert "row 0" in str(exc.value) and "sums to 0.9" in str(exc.value)
    assert "T / T.sum(axis=1, keepdims=True)" in str(exc.value)
    with pytest.raises(DataError, match="must be square C x C"):
        from_transition(np.array([0, 1]), np.full((2, 3), 1 / 3), seed=0)
    with pytest.raises(DataError, match="it must be 10 x 10"):
        from_transition(Y10, random_matrix(4), seed=0, num_classes=10)
    neg = np.array([[1.2, -0.2], [0.0, 1.0]])
    with pytest.raises(DataError, match="negative"):
        from_transition(np.array([0, 1]), neg, seed=0)
    with pytest.raises(DataError, match=r"outside \[0, 4\)"):
        from_transition(np.array([0, 5]), random_matrix(4), seed=0)


def test_bad_matrix_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        make_noise(Y10, f"matrix:{tmp_path / 'missing.npy'}", 10, seed=0)
    path = tmp_path / "T.npy"
    np.save(path, random_matrix(4))
    with pytest.raises(DataError, match="must be 10 x 10"):
        make_noise(Y10, f"matrix:{path}", 10, seed=0)


def test_other_errors():
    with pytest.raises(DataError, match="features"):
        make_noise(Y10, "idn:0.4", 10, seed=0)
    with pytest.raises(DataError, match="feature rows"):
        instance_dependent(Y10, np.zeros((5, 3)), 0.4, 10, seed=0)
    with pytest.raises(DataError, match="seed"):
        symmetric_flip(Y10, 0.4, 10, seed=-1)
    with pytest.raises(DataError, match="outside"):
        symmetric_flip(np.array([0, 10]), 0.4, 10, seed=0)
    with pytest.raises(DataError, match="disjoint"):
        cifar100_superclass(Y10, 0.4, seed=0, groups=[[0, 1], [1, 2]], num_classes=10)


# ------------------------------------------------------------------------------------ LabeledData and files
def make_data(n: int = 2000, c: int = 10) -> LabeledData:
    rng = np.random.default_rng(0)
    return LabeledData(x=rng.normal(size=(n, 5)).astype(np.float32), labels=rng.integers(0, c, size=n),
                       class_names=[f"c{i}" for i in range(c)], name="toy")


def test_apply_noise_keeps_true_labels():
    data = make_data()
    noisy, res = apply_noise(data, "sym:0.4", seed=0)
    np.testing.assert_array_equal(noisy.true_labels, data.labels)
    np.testing.assert_array_equal(noisy.labels, res.labels)
    assert noisy.noise_rate == pytest.approx(0.4)
    # noising again starts from the true labels, not from the already noisy ones
    again, res2 = apply_noise(noisy, "pairflip:0.2", seed=0)
    np.testing.assert_array_equal(again.true_labels, data.labels)
    np.testing.assert_array_equal(res2.true_labels, data.labels)
    assert again.noise_rate == pytest.approx(0.2, abs=1e-3)
    assert data.true_labels is None  # the input is not modified


def test_save_load_round_trip(tmp_path):
    from dataclasses import replace

    # asym's map is CIFAR-10's: the toy data take its class names
    from noisyfit.data.cifar10_jpeg import CIFAR10_CLASSES

    data = replace(make_data(), class_names=list(CIFAR10_CLASSES))
    _, res = apply_noise(data, "asym:0.4", seed=5)
    path = save_noisy_labels(tmp_path / "sub" / "noise", res, "toy/train")
    assert path.name == "noise.npz" and path.is_file()
    back = load_noisy_labels(path, num_examples=len(data), num_classes=10)
    assert isinstance(back, NoiseResult)
    np.testing.assert_array_equal(back.labels, res.labels)
    np.testing.assert_array_equal(back.true_labels, res.true_labels)
    np.testing.assert_allclose(back.transition, res.transition)
    np.testing.assert_allclose(back.realised_transition, res.realised_transition)
    assert back.spec == "asym:0.4" and back.seed == 5 and back.noise_rate == res.noise_rate
    assert back.info["data_name"] == "toy/train" and back.info["exact"] is True
    attached = attach_noisy_labels(data, back)
    np.testing.assert_array_equal(attached.labels, res.labels)


def test_load_errors(tmp_path):
    data = make_data()
    _, res = apply_noise(data, "sym:0.2", seed=np.random.default_rng(0))
    path = save_noisy_labels(tmp_path / "n.npz", res, "toy/train")
    assert load_noisy_labels(path).seed is None
    with pytest.raises(DataError) as exc:
        load_noisy_labels(path, num_examples=1999)
    msg = str(exc.value)
    assert "2000 labels" in msg and "1999 examples" in msg and "toy/train" in msg
    with pytest.raises(DataError, match="not found"):
        load_noisy_labels(tmp_path / "nope.npz")
    np.savez(tmp_path / "other.npz", labels=np.zeros(3))
    with pytest.raises(DataError, match="not a noisyfit noise file"):
        load_noisy_labels(tmp_path / "other.npz")
    shuffled = data.subset(np.random.default_rng(1).permutation(len(data)))
    with pytest.raises(DataError, match="another example order"):
        attach_noisy_labels(shuffled, load_noisy_labels(path))


def test_asym_on_ten_classes_that_are_not_cifar10s_is_refused():
    # asym on 10 classes flips CIFAR-10's pairs by index: on digits it turned 9 into 1 and realised 0.15 for 0.3
    from noisyfit.data.labeled import DataError, LabeledData
    from noisyfit.data.noise import apply_noise

    y = np.arange(100) % 10
    digits = LabeledData(np.zeros((100, 2), np.float32), y, [str(k) for k in range(10)], name="digits")
    with pytest.raises(DataError, match=r"CIFAR-10's class map .* use 'pairflip:0.3'"):
        apply_noise(digits, "asym:0.3", seed=0)
    from noisyfit.data.cifar10_jpeg import CIFAR10_CLASSES

    cifar = LabeledData(np.zeros((100, 2), np.float32), y, list(CIFAR10_CLASSES), name="cifar10")
    noisy, result = apply_noise(cifar, "asym:0.4", seed=0)
    assert result.noise_rate == pytest.approx(0.2)  # 5 of 10 classes flip at 0.4
    # explicit groups, the user's own map: accepted, and flips stay inside them (0 <-> 1, 2 <-> 3)
    _, own = apply_noise(digits, "asym:0.3", seed=0, groups=[[0, 1], [2, 3]])
    flipped = own.labels != y
    assert flipped.any() and set(y[flipped]) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(own.labels[flipped], np.array([1, 0, 3, 2])[y[flipped]])
