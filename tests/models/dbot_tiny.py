"""Tiny dBOT configs shared by the model tests (32 px, 4x4 patches of 8)."""
import copy


import dbot_mm  # noqa: F401  (registers the components)

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
IMG, PATCH, NUM_PATCHES = 32, 8, 16


def tiny_dbot_cfg(**overrides):
    """A ready-to-build DBOT config; keyword args update top-level keys."""
    cfg = dict(
        type='DBOT',
        backbone=dict(
            type='DBOTViT',
            arch=copy.deepcopy(ARCH),
            img_size=IMG,
            patch_size=PATCH,
            mask_ratio=0.75),
        neck=dict(
            type='DBOTDecoder',
            num_patches=NUM_PATCHES,
            embed_dim=32,
            decoder_embed_dim=32,
            decoder_depth=2,
            decoder_num_heads=2),
        head=dict(
            type='MaskedDistillHead',
            loss=dict(type='DistillSmoothL1Loss', beta=2.0)),
        teacher=dict(
            type='ViTTeacher',
            arch=copy.deepcopy(ARCH),
            img_size=IMG,
            patch_size=PATCH),
        init_teacher_from_student=True)
    cfg.update(overrides)
    return cfg


def build_dbot(**overrides):
    from mmpretrain.registry import MODELS
    model = MODELS.build(tiny_dbot_cfg(**overrides))
    model.init_weights()
    return model
