import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import build_optim_wrapper
from mmpretrain.registry import MODELS

from dbot_tiny import ARCH, IMG, NUM_PATCHES, PATCH


def _teacher(**kw):
    cfg = dict(type='ViTTeacher', arch=copy.deepcopy(ARCH), img_size=IMG,
               patch_size=PATCH)
    cfg.update(kw)
    t = MODELS.build(cfg)
    t.init_weights()
    return t


def _embed(t, x):
    """Patch embed + cls + pos embed, written with plain torch ops."""
    w = t.patch_embed.projection.weight
    b = t.patch_embed.projection.bias
    tokens = F.conv2d(x, w, b, stride=PATCH).flatten(2).transpose(1, 2)
    cls = t.cls_token.expand(x.shape[0], -1, -1)
    return torch.cat([cls, tokens], 1) + t.pos_embed


def test_frozen_eval_and_full_image_tokens(images):
    t = _teacher()
    assert all(not p.requires_grad for p in t.parameters())
    t.train()
    assert not t.training and not any(m.training for m in t.modules())
    x = images.clone().requires_grad_(True)
    out = t(x)
    assert out.shape == (2, 1 + NUM_PATCHES, ARCH['embed_dims'])
    assert not out.requires_grad  # forward runs under no_grad


def test_no_final_norm_matches_manual_forward(images):
    t = _teacher()
    with torch.no_grad():
        x = _embed(t, images)
        for layer in t.layers:
            x = layer(x)
        normed = F.layer_norm(x, (ARCH['embed_dims'], ), eps=1e-6)
    out = t(images)
    torch.testing.assert_close(out, x)
    assert not torch.allclose(out, normed, atol=1e-3)
    assert not hasattr(t, 'ln1')


def test_depth_zero_and_partial_depth(images):
    t = _teacher(depth=0)
    assert int(t.active_depth) == 0
    with torch.no_grad():
        expected = _embed(t, images)
    torch.testing.assert_close(t(images), expected)

    t.set_depth(1)
    with torch.no_grad():
        expected = t.layers[0](_embed(t, images))
    torch.testing.assert_close(t(images), expected)
    assert 'active_depth' in t.state_dict()
    with pytest.raises(ValueError, match='num_layers'):
        t.set_depth(3)
    with pytest.raises(ValueError, match='num_layers'):
        _teacher(depth=5)


def test_load_from_student_in_place_and_errors():
    t = _teacher()
    student = MODELS.build(
        dict(type='DBOTViT', arch=copy.deepcopy(ARCH), img_size=IMG,
             patch_size=PATCH))
    student.init_weights()
    ids = {n: id(p) for n, p in t.named_parameters()}
    t.load_from_student(student.state_dict(), depth=1)
    assert {n: id(p) for n, p in t.named_parameters()} == ids
    for name, value in t.state_dict().items():
        if name != 'active_depth':
            torch.testing.assert_close(value, student.state_dict()[name])
    assert t.depth == 1
    assert all(not p.requires_grad for p in t.parameters())

    wide = dict(ARCH, embed_dims=48)
    wide_student = MODELS.build(
        dict(type='DBOTViT', arch=wide, img_size=IMG, patch_size=PATCH))
    with pytest.raises(ValueError, match='embed_dims'):
        t.load_from_student(wide_student.state_dict())

    # deeper teacher than student: fine up to the student's depth only
    deep = _teacher(arch=dict(ARCH, num_layers=4), depth=0)
    deep.load_from_student(student.state_dict(), depth=2)
    with pytest.raises(KeyError, match='layers.2'):
        deep.load_from_student(student.state_dict(), depth=3)
    assert deep.depth == 2  # failed load changes nothing


def test_teacher_stays_out_of_the_optimizer(make_dbot, images):
    model = make_dbot()
    teacher_ids = {id(p) for p in model.teacher.parameters()}
    wrapper = build_optim_wrapper(
        model,
        dict(
            optimizer=dict(
                type='AdamW', lr=1e-2, betas=(0.9, 0.95), weight_decay=0.05),
            paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.)))
    in_opt = {id(p) for g in wrapper.optimizer.param_groups
              for p in g['params']}
    assert in_opt and not in_opt & teacher_ids

    # Even the bare constructor (which hands over model.parameters()) can
    # never move the teacher: it never gets a gradient.
    plain = build_optim_wrapper(
        model,
        dict(optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05)))
    before = copy.deepcopy(model.teacher.state_dict())
    model.train()
    assert not model.teacher.training
    plain.update_params(model.loss(images)['loss'])
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
