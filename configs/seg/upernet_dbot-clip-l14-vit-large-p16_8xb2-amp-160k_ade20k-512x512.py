# dBOT ADE20K, ViT-L/16 distilled from CLIP-L/14
# (configs/pretrain/dbot_vitl_clip-l14.py; official README row: 56.2 mIoU):
# the symmetric student in the ViT-L UperNet recipe this inherits (blocks
# 7, 11, 15, 23; channels 1024).
#
# Official: `beit` branch DOWNSTREAM.md "ViT-L/16" (ade20kv_seg beit_large:
# the `main` branch's beit_large_512_ade20k_160k.py) with optimizer.lr=9e-6,
# layer_decay_rate=0.9, drop_path_rate=0.1, use_checkpoint=True. Backbone
# settings and the checkpoint check as in the ViT-B CLIP-row config
# (upernet_dbot-clip-b16-vit-base-p16_...); layer scale init 0.1 as
# pre-trained (the official file's 1e-5 is overwritten by the checkpoint).
#
# Weights: a dbot_mm run of dbot_vitl_clip-l14.py, or the official
# 87.8_clip_large_pre.pth converted with dbot_official_to_mm.py
# --backbone-only to checkpoints/dbot_vitl_clip-l14_1600e.pth;
# DBOT_PRETRAINED=... overrides.
_base_ = ['./upernet_dbot-vit-large-p16_8xb2-amp-160k_ade20k-512x512.py']
from dbot_mm.utils.config_arch import symmetric_backbone  # noqa: E402

pretrained = '{{$DBOT_PRETRAINED:checkpoints/dbot_vitl_clip-l14_1600e.pth}}'

model = dict(
    backbone=symmetric_backbone(
        pretrained, drop_path_rate=0.1, with_cp=True))

optim_wrapper = dict(
    optimizer=dict(lr=9e-6), paramwise_cfg=dict(layer_decay_rate=0.9))
