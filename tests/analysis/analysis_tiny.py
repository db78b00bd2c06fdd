"""Tiny models and checkpoints for the analysis tests (32 px, patch 8:
a 4 x 4 grid; 2 blocks of 2 heads)."""
import copy

import torch

import dbot_mm  # noqa: F401  (registers the components)

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
IMG, PATCH, GRID = 32, 8, 4


def tiny_vit(final_norm=True):
    from mmpretrain.models.backbones import VisionTransformer
    torch.manual_seed(0)
    vit = VisionTransformer(arch=copy.deepcopy(ARCH), img_size=IMG,
                            patch_size=PATCH, out_type='raw',
                            final_norm=final_norm)
    vit.init_weights()
    vit.eval()  # mmpretrain's ViT.train() does not return self
    return vit


def tiny_dbot():
    from mmpretrain.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='DBOT',
        backbone=dict(type='DBOTViT', arch=copy.deepcopy(ARCH),
                      img_size=IMG, patch_size=PATCH),
        neck=dict(type='DBOTDecoder', num_patches=GRID * GRID,
                  embed_dim=ARCH['embed_dims'], decoder_embed_dim=16,
                  decoder_depth=1, decoder_num_heads=2),
        head=dict(type='MaskedDistillHead',
                  loss=dict(type='DistillSmoothL1Loss', beta=2.0)),
        teacher=dict(type='ViTTeacher', arch=copy.deepcopy(ARCH),
                     img_size=IMG, patch_size=PATCH)))
    model.init_weights()
    return model


def save_dbot_checkpoint(path, teacher_depth=1):
    """What a Runner writes at a stage boundary: student, decoder, head and a
    teacher that runs ``teacher_depth`` of its blocks; random values so a
    skipped tensor would show."""
    model = tiny_dbot()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    model.teacher.set_depth(teacher_depth)
    model.stage.fill_(1)
    torch.save(dict(meta=dict(epoch=2, iter=10),
                    state_dict=model.state_dict(),
                    message_hub=dict(runtime_info=dict(epoch=2))), path)
    return model


def write_images(folder, num=6, size=IMG):
    import os

    import mmcv
    import numpy as np
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    for i in range(num):
        sub = os.path.join(folder, f'class{i % 2}')
        os.makedirs(sub, exist_ok=True)
        mmcv.imwrite(rng.integers(0, 255, (size, size), dtype=np.uint8),
                     os.path.join(sub, f'{i}.png'))
    return folder
