import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from noisyfit.models.heads.code import CodeHead
from noisyfit.ops.hadamard import bitwise_bce, decode, decode_scores, default_code_bits, hadamard_codes


@pytest.mark.parametrize("classes,bits", [(10, 32), (32, 32), (4, 8)])
def test_codewords_are_pm1_orthogonal_and_class0_is_all_ones(classes, bits):
    c = hadamard_codes(classes, bits)
    assert c.shape == (classes, bits)
    assert set(c.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(c @ c.t(), bits * torch.eye(classes))  # mutually orthogonal rows
    assert torch.equal(c[0], torch.ones(bits))
    # orthogonal +-1 rows differ in exactly K/2 bits
    assert int((c[3] != c[1]).sum()) == bits // 2


def test_more_classes_than_bits_use_the_negated_rows():
    c = hadamard_codes(100, 64)
    assert torch.equal(c[64:], -c[:36])
    assert torch.equal(c[64], -torch.ones(64))
    gram = c @ c.t()
    off = gram - torch.diag(torch.diag(gram))
    # pairs are orthogonal except a row and its negation (inner product -K)
    assert set(off.unique().tolist()) == {0.0, -64.0}
    assert len({tuple(r.tolist()) for r in c}) == 100


def test_bad_code_lengths_are_refused():
    with pytest.raises(ValueError, match="power of two"):
        hadamard_codes(10, 24)
    with pytest.raises(ValueError, match="code_bits"):
        hadamard_codes(100, 32)  # 100 > 2 * 32: the official generator fails here too


def test_default_bits_follow_the_official_configs():
    assert default_code_bits(10) == 32 and default_code_bits(32) == 32
    assert default_code_bits(100) == 64 and default_code_bits(50) == 64
    assert default_code_bits(200) == 128


@pytest.mark.parametrize("classes,bits", [(10, 32), (100, 64)])
def test_decoding_recovers_each_class_from_its_codeword_and_from_a_corrupted_one(classes, bits):
    c = hadamard_codes(classes, bits)
    assert torch.equal(decode(c, c), torch.arange(classes))
    # soft outputs with the right signs decode the same way
    assert torch.equal(decode(0.3 * c, c), torch.arange(classes))
    # minimum distance K/2 corrects fewer than K/4 flipped bits
    g = torch.Generator().manual_seed(0)
    noisy = c.clone()
    for k in range(classes):
        flip = torch.randperm(bits, generator=g)[: bits // 4 - 1]
        noisy[k, flip] *= -1
    assert torch.equal(decode(noisy, c), torch.arange(classes))


def test_decode_scores_count_agreeing_minus_disagreeing_bits():
    c = hadamard_codes(4, 8)
    h = c[2].clone()
    h[:2] *= -1  # 2 wrong bits
    s = decode_scores(h[None], c)[0]
    assert s[2] == 8 - 2 * 2  # 6 agree, 2 disagree
    assert s.argmax() == 2


def test_bitwise_bce_matches_torch_and_hand_values():
    codes = hadamard_codes(4, 8)
    h = torch.tensor([[0.0] * 8, codes[1].tolist(), (-codes[1]).tolist()])
    target = codes[[1, 1, 1]]
    got = bitwise_bce(h, target)
    assert got.shape == (3, 8)
    assert torch.allclose(got[0], torch.full((8,), math.log(2.0)))  # undecided output: log 2 per bit
    assert torch.allclose(got[1], torch.full((8,), -math.log1p(-0.5e-4)), atol=1e-6)  # right code, clamped
    assert torch.allclose(got[2], torch.full((8,), -math.log(0.5e-4)), atol=1e-3)  # opposite code: ~9.90
    ref = F.binary_cross_entropy((h.clamp(-1 + 1e-4, 1 - 1e-4) + 1) / 2, (target + 1) / 2, reduction="none")
    assert torch.allclose(got, ref, atol=1e-5)


def test_code_head_is_the_official_mlp():
    head = CodeHead(16, 32)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 16), (16, 16), (16, 32)]
    assert [m.p for m in head.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    assert isinstance(head.mlp[-1], nn.Tanh)
    out = head(torch.randn(5, 16) * 100)
    assert out.shape == (5, 32) and out.abs().max() <= 1.0
