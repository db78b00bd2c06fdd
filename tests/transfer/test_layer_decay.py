"""Layer-wise LR decay: lr = base * rate ** (depth + 1 - layer) for the ViT
inside ImageClassifier, CascadeRCNN and EncoderDecoder; no weight decay on
norms, biases, 1-D params, position embeddings, tokens, rel-pos tables."""
import re

import pytest
import torch.nn as nn
from mmengine.registry import init_default_scope

import dbot_mm  # noqa: F401
from dbot_mm.engine.optimizers import LayerDecayOptimWrapperConstructor
from transfer_tiny import (TINY_DEPTH, build_model, configs, load_config,
                           needs_ops, shrink)

BASE_LR, WD = 1e-3, 0.05


def expected_layer(name: str) -> int:
    """The rule, written independently of the implementation."""
    if name in ('backbone.cls_token', 'backbone.pos_embed') or \
            name.startswith('backbone.patch_embed.'):
        return 0
    m = re.match(r'backbone\.layers\.(\d+)\.', name)
    return int(m.group(1)) + 1 if m else TINY_DEPTH + 1


def no_decay(name: str, param, model) -> bool:
    module = model.get_submodule(name.rsplit('.', 1)[0]) if '.' in name \
        else model
    is_norm = isinstance(module, (nn.modules.batchnorm._BatchNorm,
                                  nn.GroupNorm, nn.LayerNorm))
    return (param.ndim == 1 or is_norm or name.endswith('.bias')
            or any(k in name for k in ('pos_embed', 'cls_token',
                                       'relative_position_bias_table')))


def check_groups(model, rate):
    ctor = LayerDecayOptimWrapperConstructor(
        dict(optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=WD)),
        dict(layer_decay_rate=rate))
    groups = ctor(model).optimizer.param_groups
    params = dict(model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    assert {g['param_name'] for g in groups} == trainable
    seen_layers = set()
    for g in groups:
        name = g['param_name']
        layer = expected_layer(name)
        seen_layers.add(layer)
        assert g['lr'] == pytest.approx(
            BASE_LR * rate**(TINY_DEPTH + 1 - layer), rel=1e-12), name
        assert g['weight_decay'] == (
            0. if no_decay(name, params[name], model) else WD), name
    assert seen_layers == set(range(TINY_DEPTH + 2))
    return {g['param_name']: g for g in groups}


def test_vit_in_image_classifier():
    cfg = shrink(load_config(configs('cls')[0]))
    model = build_model(cfg)
    groups = check_groups(model, 0.65)
    assert groups['backbone.patch_embed.projection.weight']['lr'] == \
        pytest.approx(BASE_LR * 0.65**5)
    assert groups['backbone.layers.1.attn.qkv.weight']['lr'] == \
        pytest.approx(BASE_LR * 0.65**3)
    assert groups['head.fc.weight']['lr'] == BASE_LR
    assert groups['head.fc.weight']['weight_decay'] == WD
    assert groups['backbone.ln2.weight']['weight_decay'] == 0.


@pytest.mark.parametrize(
    'rel', [pytest.param(c, marks=needs_ops) for c in (
        next(c for c in configs('det') if '-clip-' not in c),
        next(c for c in configs('seg') if '-clip-' not in c))])
def test_vit_in_detector_and_segmentor(rel):
    model = build_model(shrink(load_config(rel)))
    rate = load_config(rel).optim_wrapper.paramwise_cfg.layer_decay_rate
    groups = check_groups(model, rate)
    heads = [n for n in groups if not n.startswith('backbone.')]
    assert heads and all(groups[n]['lr'] == BASE_LR for n in heads)
    assert groups['backbone.adapter.1.weight']['lr'] == BASE_LR
    if 'seg/' in rel:
        table = 'backbone.layers.2.attn.rel_pos_bias.' \
            'relative_position_bias_table'
        assert groups[table]['lr'] == pytest.approx(BASE_LR * rate**2)
        assert groups[table]['weight_decay'] == 0.
        assert groups['backbone.layers.2.attn.gamma1.weight'][
            'weight_decay'] == 0.
        assert groups['decode_head.conv_seg.weight']['weight_decay'] == WD


@pytest.mark.parametrize('scope', [
    'mmpretrain',
    pytest.param('mmdet', marks=needs_ops),  # its registry imports mmcv.ops
    pytest.param('mmseg', marks=needs_ops)
])
def test_built_from_each_toolbox_registry(scope):
    from mmengine.optim import build_optim_wrapper
    cfg = shrink(load_config(configs('cls')[0]))
    model = build_model(cfg)
    init_default_scope(scope)
    wrapper = build_optim_wrapper(
        model,
        dict(optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=WD),
             constructor='LayerDecayOptimWrapperConstructor',
             paramwise_cfg=dict(layer_decay_rate=0.5)))
    lrs = {g['param_name']: g['lr'] for g in wrapper.optimizer.param_groups}
    assert lrs['backbone.cls_token'] == pytest.approx(BASE_LR * 0.5**5)


def test_frozen_params_are_left_out_and_errors_are_clear():
    cfg = shrink(load_config(
        next(c for c in configs('cls') if 'linear' in c)))
    model = build_model(cfg)
    ctor = LayerDecayOptimWrapperConstructor(
        dict(optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=WD)),
        dict(layer_decay_rate=0.5))
    names = {g['param_name'] for g in ctor(model).optimizer.param_groups}
    assert names and not any(n.startswith('backbone.') for n in names)
    with pytest.raises(TypeError, match='get_layer_depth'):
        ctor(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match='layer_decay_rate'):
        LayerDecayOptimWrapperConstructor(
            dict(optimizer=dict(type='AdamW', lr=BASE_LR)), dict())
