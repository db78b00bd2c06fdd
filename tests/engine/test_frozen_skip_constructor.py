"""The quiet constructor builds exactly the default constructor's groups."""
import logging

import pytest
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import init_default_scope

from dbot_mm.engine.optimizers import FrozenSkipOptimWrapperConstructor

PAPER_OPTIM = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95),
                   weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0., bias_decay_mult=0.,
        custom_keys={k: dict(decay_mult=0.)
                     for k in ('pos_embed', 'cls_token', 'mask_token')}))


_ARCH = dict(embed_dims=32, num_layers=2, num_heads=2,
             feedforward_channels=64)
TINY_DBOT = dict(
    type='DBOT',
    backbone=dict(type='DBOTViT', arch=_ARCH, img_size=32, patch_size=8),
    neck=dict(type='DBOTDecoder', decoder_embed_dim=32, decoder_depth=1,
              decoder_num_heads=2),
    head=dict(type='MaskedDistillHead'),
    teacher=dict(type='ViTTeacher'))


class _Capture(logging.Handler):

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def _build(constructor_cls, model):
    cfg = dict(PAPER_OPTIM)
    constructor = constructor_cls(
        optim_wrapper_cfg={k: v for k, v in cfg.items()
                           if k != 'paramwise_cfg'},
        paramwise_cfg=cfg['paramwise_cfg'])
    logger = MMLogger.get_current_instance()
    capture = _Capture()
    logger.addHandler(capture)
    try:
        wrapper = constructor(model)
    finally:
        logger.removeHandler(capture)
    return wrapper, capture.records


def test_same_groups_as_default_without_the_per_param_warnings():
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    model = MODELS.build(TINY_DBOT)
    model.init_weights()
    names = {id(p): n for n, p in model.named_parameters()}
    order_before = [n for n, _ in model.named_parameters()]
    ref, ref_logs = _build(DefaultOptimWrapperConstructor, model)
    ours, our_logs = _build(FrozenSkipOptimWrapperConstructor, model)

    def groups(wrapper):
        return [(tuple(names[id(p)] for p in g['params']), g['lr'],
                 g['weight_decay'])
                for g in wrapper.optimizer.param_groups]

    assert groups(ours) == groups(ref)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(n for g in groups(ours) for n in g[0]) == sorted(trainable)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any(n.startswith('teacher.') for n in frozen)
    # the default logs one warning per frozen parameter, ours one line
    skipped = [r for r in ref_logs if 'requires_grad' in r.getMessage()]
    assert len(skipped) == len(frozen)
    ours_msgs = [r.getMessage() for r in our_logs
                 if 'requires_grad' in r.getMessage()]
    assert len(ours_msgs) == 1 and 'teacher (' in ours_msgs[0]
    assert all(r.levelno < logging.WARNING for r in our_logs
               if 'requires_grad' in r.getMessage())
    # plain dicts, not mmengine's ConfigDict (dynamo cannot trace
    # AdamW.step over ConfigDict groups: compile=True)
    assert all(type(g) is dict for g in ours.optimizer.param_groups)
    # the model is left exactly as it was (same parameter order)
    assert [n for n, _ in model.named_parameters()] == order_before


@pytest.mark.parametrize('config', ['dbot_vitb.py', 'dbot_demo_fashion-mnist.py'])
def test_pretrain_configs_use_it(config):
    from mmengine import Config
    cfg = Config.fromfile(f'configs/pretrain/{config}')
    assert cfg.optim_wrapper.constructor == \
        'FrozenSkipOptimWrapperConstructor'
    assert cfg.optim_wrapper.optimizer.fused is True


def test_flattened_weights_keep_their_decay():
    """Under FSDP (use_orig_params) the optimizer sees every parameter as a
    flat 1-D view; ``flat_decay_mult`` must still exempt only the really
    1-D ones, as without the wrapper."""
    import torch
    from mmpretrain.registry import MODELS

    from dbot_mm.engine.optimizers import record_param_ndims
    init_default_scope('mmpretrain')
    cfg = dict(type='OptimWrapper',
               optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
               paramwise_cfg=dict(bias_decay_mult=0., flat_decay_mult=0.))

    def decays(flatten, record):
        torch.manual_seed(0)
        model = MODELS.build(TINY_DBOT)
        if record:
            record_param_ndims(model)
        if flatten:  # what FSDP's sharded views look like
            for p in model.parameters():
                p.data = p.data.flatten()
        constructor = FrozenSkipOptimWrapperConstructor(
            optim_wrapper_cfg={k: v for k, v in cfg.items()
                               if k != 'paramwise_cfg'},
            paramwise_cfg=cfg['paramwise_cfg'])
        names = {id(p): n for n, p in model.named_parameters()}
        return {names[id(g['params'][0])]: g['weight_decay']
                for g in constructor(model).optimizer.param_groups}

    ref = decays(flatten=False, record=False)
    assert ref['backbone.layers.0.attn.qkv.weight'] == 0.05
    assert ref['backbone.layers.0.attn.qkv.bias'] == 0.
    assert ref['backbone.ln1.weight'] == 0.
    # without the recorded shapes every weight matrix loses its decay
    broken = decays(flatten=True, record=False)
    assert broken['backbone.layers.0.attn.qkv.weight'] == 0.
    assert decays(flatten=True, record=True) == ref
