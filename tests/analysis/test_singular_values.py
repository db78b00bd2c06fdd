"""Normalised singular values: exact rank on hand-built features, and the
hooked block outputs are the encoder's real tokens."""
import numpy as np
import pytest
import torch

from analysis_tiny import ARCH, GRID, IMG, tiny_vit
from dbot_mm.analysis import (effective_rank, normalized_singular_values,
                              token_features)


@pytest.mark.parametrize('k', [1, 3, 7])
def test_rank_k_features_have_exactly_k_values(k):
    g = torch.Generator().manual_seed(k)
    a = torch.randn(200, k, generator=g, dtype=torch.float64)
    a = a - a.mean(0)  # zero-mean columns: centring keeps the rank
    feats = a @ torch.randn(k, 24, generator=g, dtype=torch.float64)
    s = normalized_singular_values(feats)
    assert s.shape == (24, )
    assert s[0] == 1 and (s[:-1] >= s[1:]).all()
    assert int((s > 1e-8).sum()) == k
    assert s[k:].abs().max() < 1e-10


def test_centring_removes_the_mean_direction():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(100, 2, generator=g) @ torch.randn(2, 10, generator=g)
    base = base - base.mean(0)
    shifted = base + 50 * torch.ones(10)  # a strong common offset
    assert int((normalized_singular_values(shifted) > 1e-6).sum()) == 2
    assert int((normalized_singular_values(shifted, center=False)
                > 1e-6).sum()) == 3
    const = torch.ones(5, 4)
    assert torch.equal(normalized_singular_values(const),
                       torch.zeros(4, dtype=torch.float64))


def test_effective_rank():
    assert effective_rank(np.ones(5)) == pytest.approx(5)
    assert effective_rank(np.array([1, 0, 0])) == pytest.approx(1)
    assert effective_rank(np.zeros(3)) == 0


def test_token_features_are_block_outputs():
    vit = tiny_vit(final_norm=True)
    x = torch.randn(3, 3, IMG, IMG)
    L, C = GRID * GRID, ARCH['embed_dims']
    feats = token_features(vit, x, layers='all', tokens='patch')
    assert sorted(feats) == [0, 1]
    assert feats[0].shape == (3 * L, C)
    with torch.no_grad():
        out = vit(x)[0]  # (B, 1 + L, C) after the final norm
    assert torch.allclose(vit.ln1(feats[1]), out[:, 1:].reshape(-1, C),
                          atol=1e-5)
    mean = token_features(vit, x, layers=[-1], tokens='mean')
    assert mean[1].shape == (3, C)
    assert torch.allclose(mean[1], feats[1].view(3, L, C).mean(1), atol=1e-6)
    assert token_features(vit, x, tokens='cls')[1].shape == (3, C)
    assert token_features(vit, x, tokens='all')[1].shape == (3 * (L + 1), C)
    with pytest.raises(ValueError):
        token_features(vit, x, tokens='nope')
    assert not vit.layers[1]._forward_hooks

