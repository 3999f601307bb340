"""Batched histogram equalisation against kornia's per-image loop (noisyfit.data.equalize)."""

import pytest
import torch

kornia = pytest.importorskip("kornia")

from noisyfit.data.augment import Augmenter  # noqa: E402
from noisyfit.data.equalize import equalize, use_batched_equalize  # noqa: E402


def _images(seed: int) -> torch.Tensor:
    """Stored-image values (k/255), free floats (as after a colour operation), a flat channel, two levels,
    values at the histogram's bin edges. 48x40 pixels, so the step, (pixels - last bin) // 255, runs to 7
    (below 255 pixels it is always 0 and the channel is left as it is)."""
    g = torch.Generator().manual_seed(seed)
    stored = torch.randint(0, 256, (6, 3, 48, 40), generator=g).float() / 255.0
    low = torch.randint(0, 40, (6, 3, 48, 40), generator=g).float() / 255.0  # a dark image: a steep table
    free = torch.rand(6, 3, 48, 40, generator=g) ** 3  # skewed, so the lookup table is far from identity
    flat = torch.full((1, 3, 48, 40), 0.4)  # one level: step 0, left as it is
    two = (torch.rand(1, 3, 48, 40, generator=g) > 0.9).float() * 0.8  # two levels, the top one rare
    edges = (torch.arange(1920).float() % 257 * 255 / 256 / 255).clamp(0, 1).reshape(1, 1, 48, 40)
    return torch.cat([stored, low, free, flat, two, edges.expand(1, 3, 48, 40)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equalize_is_kornias_to_the_bit(seed):
    x = _images(seed)
    ours, theirs = equalize(x), kornia.enhance.equalize(x)
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, x)  # it did something: the skewed images are spread out
    with torch.autocast("cpu", dtype=torch.bfloat16):  # strong views are made inside the training step's autocast
        assert torch.equal(equalize(x), kornia.enhance.equalize(x))


def test_equalize_by_hand_on_a_two_level_channel():
    # 3 pixels at 0, 1 at 255: histogram {0: 3, 255: 1}; step = (4 - 1) // 255 = 0 -> unchanged
    x = torch.tensor([0.0, 0.0, 0.0, 1.0]).reshape(1, 1, 2, 2)
    assert torch.equal(equalize(x), x * 255.0 / 255.0)
    # 401 pixels at 10/255, 364 at 20/255, 35 at 30/255: step = (800 - 35) // 255 = 3, step // 2 = 1;
    # lut[v] = (cumsum[v - 1] + 1) // 3: lut[10] = 1 // 3 = 0, lut[20] = 402 // 3 = 134, lut[30] = 766 // 3 = 255
    x = torch.cat([torch.full((n,), v / 255.0) for n, v in ((401, 10), (364, 20), (35, 30))]).reshape(1, 1, 20, 40)
    out = equalize(x).flatten() * 255.0
    assert out[:401].eq(0).all() and out[401:765].eq(134).all() and out[765:].eq(255).all()


def test_autoaugment_draws_the_same_images_with_the_batched_equalize():
    from kornia.augmentation.auto import AutoAugment

    x = torch.rand(48, 3, 16, 16)
    plain, batched = AutoAugment(policy="cifar10"), AutoAugment(policy="cifar10")
    assert use_batched_equalize(batched) == 9  # the CIFAR-10 policy has 9 equalize operations in 7 sub-policies
    for k, (a, b) in enumerate(zip(plain.children(), batched.children())):  # each sub-policy, same draws
        torch.manual_seed(k)
        want = a(x)
        torch.manual_seed(k)
        assert torch.equal(b(x), want), k


def test_the_augmenter_uses_it():
    from kornia.augmentation import RandomEqualize

    op = Augmenter(torch.zeros(3), torch.ones(3), is_image=True)._strong_op()
    eq = [m for m in op.modules() if isinstance(m, RandomEqualize)]
    assert eq and all("apply_transform" in vars(m) for m in eq)
