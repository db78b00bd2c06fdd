"""Mean attention distance: exact values on hand-built attention maps, and
the recomputed maps equal what the fused attention really used."""
import itertools
import math

import numpy as np
import pytest
import torch

from analysis_tiny import GRID, IMG, PATCH, tiny_vit
from dbot_mm.analysis import (attention_distance, attention_probs,
                              mean_attention_distance, patch_distance_matrix,
                              uniform_attention_distance)


def grid_mean_distance(g, p):
    """Mean over all ordered (query, key) pairs, self pairs included, of the
    distance between patch centres: computed pair by pair."""
    cells = list(itertools.product(range(g), range(g)))
    total = sum(math.hypot(a[0] - b[0], a[1] - b[1]) * p
                for a in cells for b in cells)
    return total / len(cells)**2


def test_distance_matrix_is_in_pixels_row_major():
    d = patch_distance_matrix(2, 4)
    expected = torch.tensor([[0, 4, 4, 4 * 2**.5], [4, 0, 4 * 2**.5, 4],
                             [4, 4 * 2**.5, 0, 4], [4 * 2**.5, 4, 4, 0]],
                            dtype=torch.float64)
    assert torch.allclose(d, expected)
    assert patch_distance_matrix((2, 3)).shape == (6, 6)


@pytest.mark.parametrize('g,p', [(2, 16), (3, 4), (5, 8)])
def test_uniform_attention_gives_mean_distance_of_the_grid(g, p):
    L = g * g
    expected = grid_mean_distance(g, p)
    # uniform over the patches only (no weight on cls)
    attn = torch.zeros(2, 3, L + 1, L + 1)
    attn[..., 1:] = 1 / L
    for renorm in (True, False):
        out = mean_attention_distance(attn, g, p, renormalize=renorm)
        assert out.shape == (2, 3)
        assert torch.allclose(out, torch.full_like(out, expected))
    # uniform over cls and patches: renormalised it is the same; raw, the
    # cls share 1/(L+1) counts as distance 0
    attn = torch.full((1, 2, L + 1, L + 1), 1 / (L + 1))
    assert torch.allclose(
        mean_attention_distance(attn, g, p), torch.tensor(expected,
                                                          dtype=torch.float64))
    assert torch.allclose(
        mean_attention_distance(attn, g, p, renormalize=False),
        torch.tensor(expected * L / (L + 1), dtype=torch.float64))
    assert uniform_attention_distance(g, p) == pytest.approx(expected)


def test_attention_on_self_gives_zero():
    L = GRID * GRID
    attn = torch.eye(L + 1).expand(2, 4, L + 1, L + 1)
    assert torch.equal(mean_attention_distance(attn, GRID, PATCH),
                       torch.zeros(2, 4, dtype=torch.float64))


def test_every_query_on_one_key_and_mixed_heads():
    g, p = 3, 4
    L = g * g
    attn = torch.zeros(1, 2, L + 1, L + 1)
    attn[0, 0, 1:, 1] = 1.  # head 0: everything looks at the top-left patch
    attn[0, 1, 1:, 1:] = torch.eye(L)  # head 1: on itself
    corner = np.mean([math.hypot(r, c) * p for r in range(g)
                      for c in range(g)])
    out = mean_attention_distance(attn, g, p)[0]
    assert out[0].item() == pytest.approx(corner)
    assert out[1].item() == 0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match='does not fit'):
        mean_attention_distance(torch.ones(1, 1, 10, 10), 4)


def test_recomputed_maps_are_the_ones_the_block_used():
    vit = tiny_vit()
    attn = vit.layers[0].attn
    x = torch.randn(2, GRID * GRID + 1, attn.embed_dims)
    probs = attention_probs(attn, x)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 2, GRID * GRID + 1))
    B, N, _ = x.shape
    v = attn.qkv(x).reshape(B, N, 3, attn.num_heads,
                            attn.head_dims).permute(2, 0, 3, 1, 4)[2]
    out = attn.proj((probs @ v).transpose(1, 2).reshape(B, N, -1))
    assert torch.allclose(out, attn(x), atol=1e-5)


def test_backbone_with_zero_queries_and_keys_attends_uniformly():
    """q = k = 0 makes every map uniform over cls + patches, so every block
    and head must give the grid's mean distance."""
    vit = tiny_vit()
    dims = vit.embed_dims
    with torch.no_grad():
        for layer in vit.layers:
            layer.attn.qkv.weight[:2 * dims] = 0
            layer.attn.qkv.bias[:2 * dims] = 0
    images = torch.randn(5, 3, IMG, IMG)
    dist = attention_distance(vit, images, batch_size=2)
    assert dist.shape == (2, 2)
    assert np.allclose(dist, grid_mean_distance(GRID, PATCH))


def test_trained_like_backbone_gives_sane_values_and_removes_hooks():
    vit = tiny_vit()
    images = torch.randn(3, 3, IMG, IMG)
    dist = attention_distance(vit, images)
    far = patch_distance_matrix(GRID, PATCH).max().item()
    assert dist.shape == (2, 2) and (dist >= 0).all() and (dist <= far).all()
    assert not vit.layers[0].attn._forward_hooks
    # a larger input: the grid follows the images
    bigger = attention_distance(vit, torch.randn(2, 3, 2 * IMG, 2 * IMG))
    assert bigger.shape == (2, 2)
