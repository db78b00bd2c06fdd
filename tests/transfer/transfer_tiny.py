"""Shared helpers for the transfer tests: tiny archs, a dbot_mm-style
pretraining checkpoint, config shrinking and model building on CPU."""
import copy
import glob
import importlib
import os.path as osp

import pytest
import torch
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs')

# 4 blocks, patch 16: strides 4..32 out of 64 px images in a second.
TINY_ARCH = dict(
    embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)
TINY_DIMS = TINY_ARCH['embed_dims']
TINY_DEPTH = TINY_ARCH['num_layers']


def _has_mmcv_ops() -> bool:
    try:
        import mmcv._ext  # noqa: F401
        return True
    except Exception:  # ImportError, or a build without the symbols
        return False


HAS_OPS = _has_mmcv_ops()
needs_ops = [
    pytest.mark.needs_ops,
    pytest.mark.skipif(
        not HAS_OPS,
        reason='mmcv compiled ops (mmcv._ext) missing, e.g. mmcv-lite: '
        'mmdet / mmseg cannot import')
]


def configs(task: str):
    """Runnable configs of configs/<task>/ (not helper bases)."""
    return sorted(
        osp.relpath(p, CONFIG_DIR)
        for p in glob.glob(osp.join(CONFIG_DIR, task, '*.py')))


def load_config(rel: str) -> Config:
    return Config.fromfile(osp.join(CONFIG_DIR, rel))


def make_dbot_checkpoint(path: str, arch=TINY_ARCH, patch_size=16,
                         img_size=64) -> dict:
    """Write what a dbot_mm pretraining run saves: the student encoder
    (mmpretrain MAEViT layout) under ``backbone.``, plus the teacher, the
    distillation decoder and head, and runner bookkeeping to be ignored.

    Returns the encoder state dict (unprefixed) for value checks.
    """
    from mmpretrain.models.selfsup.mae import MAEViT
    torch.manual_seed(0)
    encoder = MAEViT(arch=arch, img_size=img_size, patch_size=patch_size)
    encoder.init_weights()
    # Random values everywhere, so a silently skipped tensor is detectable.
    with torch.no_grad():
        for p in encoder.parameters():
            p.normal_()
    enc = {k: v.clone() for k, v in encoder.state_dict().items()}
    state = {f'backbone.{k}': v for k, v in enc.items()}
    state.update({f'teacher.{k}': torch.randn_like(v)
                  for k, v in enc.items()})
    dims = enc['cls_token'].shape[-1]
    state.update({
        'neck.mask_token': torch.zeros(1, 1, 16),
        'neck.decoder_embed.weight': torch.randn(16, dims),
        'neck.decoder_blocks.0.attn.qkv.weight': torch.randn(48, 16),
        'neck.decoder_pred.weight': torch.randn(dims, 16),
        'head.loss_scale': torch.ones(()),
    })
    torch.save(
        dict(
            meta=dict(epoch=2, iter=10, stage=1),
            state_dict=state,
            message_hub=dict(runtime_info=dict(epoch=2))), path)
    return enc


def build_model(cfg: Config):
    """Build ``cfg.model`` in the config's scope; SyncBN becomes BN."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    import dbot_mm  # noqa: F401
    scope = cfg.get('default_scope', 'mmpretrain')
    init_default_scope(scope)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    return revert_sync_batchnorm(registry.build(copy.deepcopy(cfg.model)))


def shrink(cfg: Config, checkpoint=None) -> Config:
    """Tiny arch, small images and thin heads; the recipe stays."""
    bb = cfg.model.backbone
    bb.arch = dict(TINY_ARCH)
    if checkpoint is None:
        bb.init_cfg = None
    else:
        bb.init_cfg.checkpoint = checkpoint
    scope = cfg.default_scope
    if scope == 'mmpretrain':
        bb.img_size = 32
        if bb.get('frozen_stages', -1) > 0:
            bb.frozen_stages = TINY_DEPTH
        if cfg.model.get('neck'):
            cfg.model.neck.input_features = TINY_DIMS
        cfg.model.head.in_channels = TINY_DIMS
        cfg.model.head.num_classes = 10
        cfg.model.data_preprocessor = dict(
            cfg.get('data_preprocessor', {}), num_classes=10)
    elif scope == 'mmdet':
        ch = 32
        bb.update(img_size=64, out_indices=(0, 1, 2, 3))
        m = cfg.model
        m.neck.update(in_channels=[TINY_DIMS] * 4, out_channels=ch)
        m.rpn_head.update(in_channels=ch, feat_channels=ch)
        m.roi_head.bbox_roi_extractor.out_channels = ch
        m.roi_head.mask_roi_extractor.out_channels = ch
        for head in m.roi_head.bbox_head:
            head.update(in_channels=ch, conv_out_channels=ch,
                        fc_out_channels=64)
        m.roi_head.mask_head.update(in_channels=ch, conv_out_channels=ch)
        m.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
        for stage in m.train_cfg.rcnn:
            stage.sampler.num = 64
        m.test_cfg.rpn.update(nms_pre=200, max_per_img=50)
    elif scope == 'mmseg':
        bb.update(img_size=64, out_indices=(0, 1, 2, 3))
        m = cfg.model
        m.data_preprocessor.size = (64, 64)
        m.decode_head.update(in_channels=[TINY_DIMS] * 4, channels=16)
        m.auxiliary_head.update(in_channels=TINY_DIMS, channels=16)
        m.test_cfg.update(crop_size=(64, 64), stride=(43, 43))
    return cfg


def cpu_optim_wrapper(cfg: Config) -> Config:
    """AMP needs a GPU: plain OptimWrapper, same constructor and groups."""
    cfg.optim_wrapper.type = 'OptimWrapper'
    cfg.optim_wrapper.pop('loss_scale', None)
    return cfg
