import numpy as np
import pytest
import torch
import torch.nn.functional as F

from noisyfit.data.augment import Augmenter, channel_stats
from noisyfit.data.batches import epoch_permutation, iterate_batches


def _aug(**kw):
    return Augmenter(torch.zeros(3), torch.ones(3), is_image=True, channels_last=False, **kw)


def test_crop_is_a_window_of_the_reflect_padded_image():
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out = _aug(pad=2, flip=False).crop_flip(x)
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(2):
        windows = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_flip_happens_about_half_the_time_and_mirrors_columns():
    torch.manual_seed(0)
    x = torch.rand(400, 1, 4, 4)
    out = _aug(pad=0, flip=True).crop_flip(x)
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)])
    same = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert bool((flipped | same).all())
    assert 0.4 < flipped.float().mean() < 0.6


def test_views_are_normalised_and_feature_rows_pass_through():
    x = torch.full((4, 3, 8, 8), 255, dtype=torch.uint8)
    a = Augmenter(torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.25, 0.25, 0.25]), is_image=True)
    assert torch.allclose(a.normalize(x), torch.full((4, 3, 8, 8), 2.0))
    assert a.strong(x).shape == (4, 3, 8, 8)
    rows = torch.randn(5, 7)
    tab = Augmenter(torch.zeros(1), torch.ones(1), is_image=False)
    assert torch.equal(tab.weak(rows), rows) and torch.equal(tab.strong(rows), rows)
    with pytest.raises(ValueError, match="unknown augmentation"):
        a.view(x, "medium")


def test_channel_stats_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 4, 4, 3), dtype=np.uint8)
    mean, std = channel_stats(x)
    ref = x.reshape(-1, 3) / 255.0
    assert np.allclose(mean.numpy(), ref.mean(0), atol=1e-6)
    assert np.allclose(std.numpy(), ref.std(0), atol=1e-5)


def test_channel_stats_are_exact_whatever_the_chunking_and_take_little_memory():
    import tracemalloc

    from noisyfit.data.augment import channel_stats_of_chunks

    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (1000, 64, 64, 3), dtype=np.uint8)  # 12 MB of pixels
    x[:, :, :, 2] = 7  # a constant channel: std at its floor, not NaN
    tracemalloc.start()
    mean, std = channel_stats(x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # by hand: exact integer sums of the pixel values and their squares
    v = x.reshape(-1, 3).astype(np.int64)
    n = len(v)
    ref_mean = v.sum(0) / n / 255.0
    ref_std = np.sqrt(np.maximum((v * v).sum(0) / n / 255.0 ** 2 - ref_mean ** 2, 1e-12))
    assert np.array_equal(mean.numpy(), ref_mean.astype(np.float32))
    assert np.array_equal(std.numpy(), ref_std.astype(np.float32))
    assert std[2].item() == np.float32(1e-6)
    # any chunking gives the same bits (the streamed path reads 256 images at a time)
    for size in (1, 256, 999):
        m2, s2 = channel_stats_of_chunks(x[i:i + size] for i in range(0, len(x), size))
        assert torch.equal(m2, mean) and torch.equal(s2, std)
    # a float64 copy of the chunk (and of its square) would take 2 x 8 bytes per value: 196 MB here
    assert peak < 24 * 2**20, peak


def test_batches_cover_each_sample_once_and_shard_across_ranks():
    data = torch.arange(100).float()[:, None]
    labels = torch.zeros(100, dtype=torch.long)
    aug = Augmenter(torch.zeros(1), torch.ones(1), is_image=False)
    one = torch.cat([b.index for b in iterate_batches(data, labels, aug, batch_size=20, seed=3, epoch=1)])
    assert sorted(one.tolist()) == list(range(100))
    r0 = [b.index for b in iterate_batches(data, labels, aug, batch_size=20, seed=3, epoch=1, rank=0, world_size=2)]
    r1 = [b.index for b in iterate_batches(data, labels, aug, batch_size=20, seed=3, epoch=1, rank=1, world_size=2)]
    # each global batch is split between the ranks, the union is the single-process batch
    for a, b, g in zip(r0, r1, one.split(20)):
        assert torch.equal(torch.cat([a, b]), g)
    assert not torch.equal(epoch_permutation(100, 3, 1), epoch_permutation(100, 3, 2))
    assert torch.equal(epoch_permutation(100, 3, 1), epoch_permutation(100, 3, 1))


class _AddPolicy(torch.nn.Module):
    """Stand-in for one kornia (sub-)policy: adds its own constant, so the output says who ran."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        return x + self.k


class _FakeAutoPolicy(torch.nn.Module):
    """Like kornia's AutoAugment/RandAugment: children are the policies; a call applies ``n`` draws to
    the whole batch."""

    def __init__(self, n_policies, n=1):
        super().__init__()
        self.policies = torch.nn.ModuleList(_AddPolicy(k / 100.0) for k in range(n_policies))
        self.n = n

    def children(self):
        return iter(self.policies)

    def forward(self, x):
        for k in torch.randint(len(self.policies), (self.n,)).tolist():
            x = self.policies[k](x)
        return x


@pytest.mark.parametrize("policy, n", [("autoaugment", 1), ("randaugment", 2)])
def test_strong_views_draw_a_policy_per_image_unless_asked_per_batch(policy, n):
    x = torch.zeros(400, 3, 8, 8, dtype=torch.uint8)
    aug = Augmenter(torch.zeros(3), torch.ones(3), is_image=True, pad=0, flip=False, strong_policy=policy,
                    channels_last=False)
    aug._strong = _FakeAutoPolicy(25 if policy == "autoaugment" else 15, n=n)
    out = aug.strong(x)
    offsets = out[:, 0, 0, 0]
    assert torch.allclose(out, offsets[:, None, None, None].expand(-1, 3, 8, 8))  # one draw per image
    # every image got exactly n policies (a sum of n offsets k/100), and images differ in which
    hundredths = offsets * 100
    assert torch.allclose(hundredths, hundredths.round(), atol=1e-3)
    assert hundredths.max() <= 24 * n + 1e-3
    assert len(hundredths.round().unique()) > 10
    torch.manual_seed(3)
    a = aug.strong(x)
    torch.manual_seed(3)
    assert torch.equal(a, aug.strong(x))  # the draws come from torch's (checkpointed) generator
    batch = Augmenter(torch.zeros(3), torch.ones(3), is_image=True, pad=0, flip=False, strong_policy=policy,
                      channels_last=False, strong_draw="batch")
    batch._strong = aug._strong
    assert len(batch.strong(x)[:, 0, 0, 0].unique()) == 1  # kornia's behaviour: one draw for the batch
    with pytest.raises(ValueError, match="strong_draw must be one of"):
        Augmenter(torch.zeros(3), torch.ones(3), is_image=True, strong_draw="pixel")


def test_real_kornia_autoaugment_per_image_keeps_shape_range_and_varies():
    torch.manual_seed(0)
    x = (torch.rand(64, 3, 32, 32) * 255).to(torch.uint8)
    x = x[:1].expand(64, -1, -1, -1).contiguous()  # one image, 64 times
    aug = Augmenter(torch.zeros(3), torch.ones(3), is_image=True, pad=0, flip=False, channels_last=False)
    # what the per-image path relies on: kornia's children are the policies it draws from, n draws a call
    assert len(list(aug._strong_op().children())) == 25  # the CIFAR-10 AutoAugment sub-policies
    ra = Augmenter(torch.zeros(3), torch.ones(3), is_image=True, strong_policy="randaugment")._strong_op()
    assert len(list(ra.children())) == 15 and ra.n == 2
    out = aug.strong(x)
    assert out.shape == (64, 3, 32, 32) and out.min() >= 0 and out.max() <= 1
    distinct = {tuple(o.flatten()[:64].tolist()) for o in out}
    assert len(distinct) > 5  # copies of one image come out differently augmented
