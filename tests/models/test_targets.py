"""Targets of DBOT: pixels, HOG, ViT / pretrained / EMA (SdAE) teachers.

Each loss is recomputed here from its formula on the head's inputs; the
targets themselves are recomputed without going through the target modules.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmpretrain.models.selfsup import HOGGenerator
from mmpretrain.registry import MODELS

from dbot_tiny import ARCH, IMG, NUM_PATCHES, PATCH, build_dbot

NUM_HIDDEN = 12  # 0.75 of 16 patches


@pytest.fixture(autouse=True)
def _scope():
    init_default_scope('mmpretrain')


def _noise(seed=0, batch=2):
    return torch.rand(batch, NUM_PATCHES,
                      generator=torch.Generator().manual_seed(seed))


def _l2_head():
    return dict(type='MaskedDistillHead', loss=dict(type='DistillL2Loss'),
                norm_target=False)


def pixel_cfg():
    return dict(teacher=dict(type='PixelTarget', norm_pix=True),
                head=_l2_head())


def hog_cfg():
    return dict(teacher=dict(type='HOGTarget', pool=4, gaussian_window=16),
                head=_l2_head())


def sdae_cfg(shrink_num=NUM_HIDDEN, num_folds=3, dim=1):
    return dict(
        teacher=dict(type='EMATeacher', arch=copy.deepcopy(ARCH),
                     img_size=IMG, patch_size=PATCH, shrink_num=shrink_num,
                     num_folds=num_folds),
        head=dict(type='MaskedDistillHead',
                  loss=dict(type='DistillCosineLoss', dim=dim)),
        init_teacher_from_student=False)


def spy_head(model):
    seen = {}
    original = model.head.loss

    def spy(pred, target, mask):
        seen.update(pred=pred, target=target, mask=mask)
        return original(pred, target, mask)

    model.head.loss = spy
    return seen


def patchify(x, p):
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(B, (H // p) * (W // p), p * p * C)


def standardise(t):
    return (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) +
                                             1e-6).sqrt()


def decoder_output(model, images, noise):
    latent, mask, ids_restore = model.backbone(images, noise=noise)
    return model.neck(latent, ids_restore), mask


# ------------------------------------------------------------------ pixels
def test_pixel_target_is_mae_normalised_pixels(images):
    model = build_dbot(**pixel_cfg())
    assert model.neck.predict_dim == model.teacher.out_dims == 8 * 8 * 3
    assert not model.teacher.with_cls and not model.teacher.needs_mask
    seen = spy_head(model)
    model.train()
    torch.manual_seed(0)
    loss = model.loss(images, noise=_noise())['loss']

    expected_target = standardise(patchify(images, PATCH))
    torch.testing.assert_close(seen['target'], expected_target)
    assert seen['pred'].shape == (2, NUM_PATCHES, 192)  # no cls
    torch.manual_seed(0)
    pred, mask = decoder_output(model, images, _noise())
    torch.testing.assert_close(seen['pred'], pred[:, 1:])
    torch.testing.assert_close(seen['mask'], mask)
    per_patch = (seen['pred'] - expected_target).pow(2).mean(-1)
    mse = (per_patch * mask).sum() / mask.sum()  # masked patches only
    torch.testing.assert_close(loss, mse)
    assert model.teacher_info()['origin'] == 'pixels'


# --------------------------------------------------------------------- HOG
def test_hog_target_matches_mmpretrain_at_vitb_geometry():
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    ours = MODELS.build(dict(type='HOGTarget'))
    assert ours.out_dims == 108 and ours.num_patches == 196
    torch.testing.assert_close(ours(x), HOGGenerator()(x), rtol=0, atol=0)


def test_hog_loss(images):
    model = build_dbot(**hog_cfg())
    assert model.neck.predict_dim == 3 * 9 * (PATCH // 4)**2
    seen = spy_head(model)
    loss = model.loss(images, noise=_noise())['loss']
    # (B, 3, 9, 8, 8) cell histograms, L2-normalised per cell, grouped by
    # the 2 x 2 cells of each 8 px patch
    out = F.normalize(_hog_cells(images), p=2, dim=2)  # (B, 3, 9, 8, 8)
    B = images.shape[0]
    cells = out.reshape(B, 27, 4, 2, 4, 2).permute(0, 2, 4, 1, 3, 5)
    expected = cells.reshape(B, 16, 108)
    torch.testing.assert_close(seen['target'], expected)
    mask = seen['mask']
    per_patch = (seen['pred'] - expected).pow(2).mean(-1)
    torch.testing.assert_close(loss, (per_patch * mask).sum() / mask.sum())
    assert mask.shape == (2, NUM_PATCHES) and mask.sum() == 2 * NUM_HIDDEN


def _hog_cells(x, nbins=9, pool=4, window=16):
    """Un-normalised HOG histograms per cell, written out from MaskFeat's
    definition (Sobel, orientation bins over [-pi, pi) mod nbins, Gaussian
    weighted magnitudes)."""
    sobel = torch.tensor([[1., 0, -1], [2, 0, -2], [1, 0, -1]])
    wx = sobel.view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    wy = sobel.t().contiguous().view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    xp = F.pad(x, (1, 1, 1, 1), mode='reflect')
    gx, gy = F.conv2d(xp, wx, groups=3), F.conv2d(xp, wy, groups=3)
    mag = torch.stack([gx, gy], -1).norm(dim=-1)
    phase = torch.atan2(gx, gy) / torch.pi * nbins
    n = torch.arange(window).float()
    g = torch.exp(-0.5 * ((n - n.mean()) / (window // 2))**2)
    g2 = g[:, None] * g[None]
    g2 = (g2 / g2.sum()).repeat(x.shape[-2] // window, x.shape[-1] // window)
    mag = mag * g2
    B, C, H, W = mag.shape
    bins = phase.floor().long() % nbins
    hist = torch.zeros(B, C, nbins, H, W).scatter_add_(
        2, bins.unsqueeze(2), mag.unsqueeze(2))
    return hist.reshape(B, C, nbins, H // pool, pool, W // pool,
                        pool).sum((4, 6))


# --------------------------------------------------- dBOT teacher (kept)
def test_vit_teacher_path_is_dbot_loss(images):
    model = build_dbot()
    seen = spy_head(model)
    loss = model.loss(images, noise=_noise())['loss']
    target = model.teacher(images)
    torch.testing.assert_close(seen['target'], target, rtol=0, atol=0)
    pred, mask = decoder_output(model, images, _noise())
    weight = torch.cat([torch.ones(2, 1), mask], 1)  # cls counts
    assert torch.equal(seen['mask'], weight)
    per_token = F.smooth_l1_loss(
        seen['pred'], standardise(target), reduction='none',
        beta=2.0).mean(-1)
    torch.testing.assert_close(loss, (per_token * weight).sum() /
                               weight.sum())


def test_predict_dim_follows_out_dims(images):
    """A CLIP-style teacher that keeps its projection predicts out_dims."""
    teacher = dict(type='PretrainedTeacher', arch=copy.deepcopy(ARCH),
                   img_size=IMG, patch_size=PATCH, out_proj_dims=24)
    model = build_dbot(teacher=teacher, init_teacher_from_student=False)
    assert model.neck.predict_dim == 24
    assert model.neck.decoder_pred.out_features == 24
    assert torch.isfinite(model.loss(images)['loss'])
    cfg = dict(teacher=teacher, neck=dict(
        type='DBOTDecoder', num_patches=NUM_PATCHES, embed_dim=32,
        decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
        predict_dim=32))
    with pytest.raises(ValueError, match='out_dims.*=24.*predict_dim=32'):
        build_dbot(**cfg)


# ------------------------------------------------------------------ SdAE
def test_sdae_views_and_loss(images):
    model = build_dbot(**sdae_cfg())
    teacher = model.teacher
    assert teacher.needs_mask and not teacher.with_cls
    assert model.teacher_info()['origin'] == 'ema'
    seen = spy_head(model)
    model.train()
    torch.manual_seed(0)
    loss = model.loss(images, noise=_noise())['loss']

    # hidden ids in masking order = argsort(noise)[:, 4:] (MAE's ids_unkeep)
    ids = torch.argsort(_noise(), dim=1, stable=True)[:, 4:]
    assert ids.shape == (2, NUM_HIDDEN)
    # teacher: 3 folds of 4 hidden patches per image, each its own view
    tokens = teacher.patch_embed(images)[0] + teacher.pos_embed[:, 1:]
    expected = []
    for b in range(2):
        for j in range(3):
            fold = tokens[b, ids[b, 4 * j:4 * (j + 1)]]
            cls = teacher.cls_token[0] + teacher.pos_embed[0, :1]
            x = torch.cat([cls, fold])[None]
            for layer in teacher.layers:
                x = layer(x)
            expected.append(teacher.ln1(x)[0, 1:])
    expected = torch.stack(expected)  # (B * 3, 4, C)
    assert seen['target'].shape == (6, 4, 32)
    torch.testing.assert_close(seen['target'], expected)

    # student: decoder output (cls dropped) at the same ids, same folds
    torch.manual_seed(0)
    pred, _ = decoder_output(model, images, _noise())
    student = torch.stack([pred[b, 1:][ids[b, 4 * j:4 * (j + 1)]]
                           for b in range(2) for j in range(3)])
    torch.testing.assert_close(seen['pred'], student)
    assert torch.equal(seen['mask'], torch.ones(6, 4))
    # official: 1 - F.cosine_similarity(norm(teacher), student).mean(),
    # torch's default dim=1 (tokens of a fold)
    cos = F.cosine_similarity(standardise(expected), student, dim=1)
    torch.testing.assert_close(loss, 1 - cos.mean())

    # per-token cosine (over channels) is the other choice
    per_token = build_dbot(**sdae_cfg(dim=-1))
    per_token.load_state_dict(model.state_dict())
    seen2 = spy_head(per_token)
    torch.manual_seed(0)
    loss2 = per_token.loss(images, noise=_noise())['loss']
    cos2 = F.cosine_similarity(standardise(seen2['target']), seen2['pred'],
                               dim=-1)
    torch.testing.assert_close(loss2, 1 - cos2.mean())


def test_fold_equals_teacher_on_that_fold_alone(images):
    model = build_dbot(**sdae_cfg(shrink_num=10, num_folds=3))
    teacher = model.teacher
    ids = torch.argsort(_noise(), dim=1)[:, 4:]
    out = teacher(images, ids_masked=ids)
    assert out.shape == (6, 3, 32)  # 10 -> 9 patches, 3 folds of 3
    # the same teacher as a one-fold view of just that fold's 3 patches,
    # one image at a time
    alone = copy.deepcopy(teacher)
    alone.shrink_num, alone.num_folds = 3, 1
    for b in range(2):
        for j in range(3):
            fold = alone(images[b:b + 1], ids_masked=ids[b:b + 1,
                                                         3 * j:3 * j + 3])
            torch.testing.assert_close(out[3 * b + j], fold[0])
    # the tenth hidden patch (dropped to fill whole folds) reaches nothing
    assert teacher.fold_ids(ids).shape == (2, 9)
    assert torch.equal(teacher.fold_ids(ids), ids[:, :9])


def test_no_visible_patch_reaches_sdae_teacher(images):
    model = build_dbot(**sdae_cfg())
    model.eval()
    seen = spy_head(model)
    model.loss(images, noise=_noise())
    target = seen['target'].clone()
    # overwrite every visible patch of the image with garbage: the teacher's
    # tokens do not move
    visible = torch.argsort(_noise(), dim=1)[:, :4]
    garbage = images.clone()
    for b in range(2):
        for i in visible[b].tolist():
            r, c = divmod(i, IMG // PATCH)
            garbage[b, :, r * PATCH:(r + 1) * PATCH,
                    c * PATCH:(c + 1) * PATCH] = 1e3
    assert model.teacher(garbage, ids_masked=torch.argsort(
        _noise(), dim=1)[:, 4:]).equal(target)
    # ...whereas a hidden patch does reach it
    garbage[0, :, :PATCH, :PATCH] += 1.
    assert 0 not in visible[0].tolist()
    assert not model.teacher(garbage, ids_masked=torch.argsort(
        _noise(), dim=1)[:, 4:]).equal(target)


def test_sdae_without_shrink_sees_whole_image(images):
    model = build_dbot(**sdae_cfg(shrink_num=None, num_folds=None, dim=-1))
    assert not model.teacher.needs_mask
    seen = spy_head(model)
    model.loss(images, noise=_noise())
    assert seen['target'].shape == (2, NUM_PATCHES, 32)
    pred, mask = decoder_output(model, images, _noise())
    assert torch.equal(seen['mask'], mask)


def test_sdae_under_bf16_autocast(images):
    model = build_dbot(**sdae_cfg())
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = model.loss(images, noise=_noise())['loss']
    full = model.loss(images, noise=_noise())['loss']
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, full, rtol=0.05, atol=0.02)


def test_ema_update_is_exact():
    model = build_dbot(**sdae_cfg())
    teacher = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    student = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    assert not torch.equal(teacher['cls_token'], student['cls_token'])
    model.ema_update_teacher(0.9)
    for name, value in model.teacher.state_dict().items():
        if name == 'active_depth':
            assert torch.equal(value, teacher[name])
            continue
        assert torch.equal(value, teacher[name] * 0.9 + student[name] *
                           (1 - 0.9)), name
    # final norm included (SdAE averages the student's norm too)
    assert 'ln1.weight' in teacher
    with pytest.raises(TypeError, match='ema_update'):
        build_dbot().ema_update_teacher(0.9)


# ------------------------------------------- switching only the target
TARGETS = {
    'vit': dict(),
    'pixel': pixel_cfg(),
    'hog': hog_cfg(),
    'sdae': sdae_cfg(),
    'pretrained': dict(teacher=dict(
        type='PretrainedTeacher', arch=copy.deepcopy(ARCH), img_size=IMG,
        patch_size=PATCH), init_teacher_from_student=False),
}


@pytest.mark.parametrize('name', sorted(TARGETS))
def test_switching_target_changes_nothing_else(name, images):
    ref = build_dbot()
    model = build_dbot(**copy.deepcopy(TARGETS[name]))

    def student(m):
        return {n: (tuple(p.shape), p.requires_grad)
                for n, p in m.named_parameters()
                if not n.startswith('teacher.')
                and not n.startswith('neck.decoder_pred.')}

    assert student(model) == student(ref)
    assert model.neck.decoder_pred.in_features == \
        ref.neck.decoder_pred.in_features
    assert model.neck.decoder_pred.out_features == \
        model.teacher.out_dims
    assert all(not p.requires_grad for p in model.teacher.parameters())

    ow = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
              constructor='FrozenSkipOptimWrapperConstructor',
              paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.,
                                 custom_keys={
                                     'pos_embed': dict(decay_mult=0.),
                                     'cls_token': dict(decay_mult=0.),
                                     'mask_token': dict(decay_mult=0.)}))

    def groups(m):
        names = {id(p): n for n, p in m.named_parameters()}
        optim = build_optim_wrapper(m, copy.deepcopy(ow)).optimizer
        return sorted((names[id(p)], g['lr'], g['weight_decay'])
                      for g in optim.param_groups for p in g['params'])

    assert groups(model) == groups(ref)
    assert not any(n.startswith('teacher.') for n, _, _ in groups(model))
    # and a step trains the student only
    model.train()
    model.loss(images, noise=_noise())['loss'].backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.neck.decoder_pred.weight.grad.abs().sum() > 0
