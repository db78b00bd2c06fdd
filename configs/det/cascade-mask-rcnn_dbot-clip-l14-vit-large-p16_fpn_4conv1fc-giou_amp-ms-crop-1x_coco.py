# dBOT COCO, ViT-L/16 distilled from CLIP-L/14
# (configs/pretrain/dbot_vitl_clip-l14.py; official README row: 56.8
# APbox): the symmetric student in the ViT-L recipe this inherits (blocks
# 7, 11, 15, 23; FPN inputs 1024; 12 epochs).
#
# Official: `beit` branch DOWNSTREAM.md "ViT-L/16" (cascade_coco_det
# beit_large, 12 epochs, steps 8,11, 2 images per GPU, use_checkpoint) with
# the `main` branch config beit_large_giou_4conv1f_coco_3x.py: AdamW lr 7e-5,
# layer decay 0.9, drop path 0.2 (as the asymmetric ViT-L row), BEiT backbone
# with per-block relative position bias and layer scale. The backbone
# settings, the checkpoint check and the absolute-position-embedding note
# are those of the ViT-B CLIP-row config
# (cascade-mask-rcnn_dbot-clip-b16-vit-base-p16_...; the official command's
# absolute-position run: ...-vit-large-p16-abs-pos_fpn_...); layer scale
# init 0.1 as pre-trained (the official file's 1e-5 is overwritten by the
# checkpoint).
#
# Weights: a dbot_mm run of dbot_vitl_clip-l14.py, or the official
# 87.8_clip_large_pre.pth converted with dbot_official_to_mm.py
# --backbone-only to checkpoints/dbot_vitl_clip-l14_1600e.pth;
# DBOT_PRETRAINED=... overrides.
_base_ = [
    './cascade-mask-rcnn_dbot-vit-large-p16_fpn_4conv1fc-giou_amp-ms-crop-1x_'
    'coco.py'
]
from dbot_mm.utils.config_arch import symmetric_backbone  # noqa: E402

pretrained = '{{$DBOT_PRETRAINED:checkpoints/dbot_vitl_clip-l14_1600e.pth}}'

model = dict(backbone=symmetric_backbone(pretrained, drop_path_rate=0.2))

optim_wrapper = dict(
    optimizer=dict(lr=7e-5), paramwise_cfg=dict(layer_decay_rate=0.9))
