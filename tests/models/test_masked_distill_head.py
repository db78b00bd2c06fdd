import pytest
import torch
from mmpretrain.registry import MODELS
from torch import nn

B, N, C = 3, 7, 16


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(B, N, C, generator=g) * 2
    target = torch.randn(B, N, C, generator=g) * 3 + 1
    mask = (torch.rand(B, N, generator=g) > 0.5).float()
    mask[:, 0] = 1  # cls always counts
    return pred, target, mask


def _norm(t):
    # written out: unbiased variance over channels, eps inside the sqrt
    mean = t.sum(-1, keepdim=True) / t.shape[-1]
    var = ((t - mean)**2).sum(-1, keepdim=True) / (t.shape[-1] - 1)
    return (t - mean) / torch.sqrt(var + 1e-6)


def _masked_mean(per_token, mask):
    return (per_token * mask).sum() / mask.sum()


def _head(loss, **kw):
    return MODELS.build(dict(type='MaskedDistillHead', loss=loss, **kw))


def test_smooth_l1_matches_hand_formula():
    pred, target, mask = _inputs()
    t = _norm(target)
    d = (pred - t).abs()
    beta = 2.0
    elem = torch.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta)
    expected = _masked_mean(elem.mean(-1), mask)
    # make sure both branches of the smooth L1 are exercised
    assert (d < beta).any() and (d >= beta).any()
    got = _head(dict(type='DistillSmoothL1Loss', beta=2.0)).loss(
        pred, target, mask)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_default_head_is_official_smooth_l1_beta2():
    pred, target, mask = _inputs(1)
    head = MODELS.build(dict(type='MaskedDistillHead'))
    t = _norm(target)
    elem = nn.SmoothL1Loss(beta=2.0, reduction='none')(pred, t)
    expected = _masked_mean(elem.mean(-1), mask)
    torch.testing.assert_close(
        head.loss(pred, target, mask), expected, rtol=1e-6, atol=1e-6)


def test_l2_and_cosine_variants():
    pred, target, mask = _inputs(2)
    t = _norm(target)
    l2 = _masked_mean(((pred - t)**2).mean(-1), mask)
    cos = (pred * t).sum(-1) / (pred.norm(dim=-1) * t.norm(dim=-1))
    cosine = _masked_mean(1 - cos, mask)
    torch.testing.assert_close(
        _head(dict(type='DistillL2Loss')).loss(pred, target, mask), l2,
        rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(
        _head(dict(type='DistillCosineLoss')).loss(pred, target, mask),
        cosine, rtol=1e-6, atol=1e-6)


def test_without_target_norm_and_elementwise_criterion():
    pred, target, mask = _inputs(3)
    # a plain torch criterion returning (B, N, C) is averaged over C
    head = _head(nn.SmoothL1Loss(beta=2.0, reduction='none'),
                 norm_target=False)
    elem = nn.functional.smooth_l1_loss(pred, target, reduction='none',
                                        beta=2.0)
    torch.testing.assert_close(
        head.loss(pred, target, mask), _masked_mean(elem.mean(-1), mask))


def test_only_masked_tokens_count_and_target_gets_no_grad():
    pred, target, mask = _inputs(4)
    pred.requires_grad_(True)
    target.requires_grad_(True)
    loss = _head(dict(type='DistillL2Loss')).loss(pred, target, mask)
    loss.backward()
    assert target.grad is None
    unmasked = mask == 0
    assert torch.all(pred.grad[unmasked] == 0)
    assert torch.all(pred.grad[~unmasked].abs().sum(-1) > 0)


def test_shape_errors_are_clear():
    pred, target, mask = _inputs()
    head = _head(dict(type='DistillL2Loss'))
    with pytest.raises(ValueError, match='predict_dim'):
        head.loss(pred, target[..., :8], mask)
    with pytest.raises(ValueError, match='mask'):
        head.loss(pred, target, mask[:, 1:])
