# ImageNet-1k fine-tuning of the dBOT ViT-L/16 distilled from CLIP-L/14
# (configs/pretrain/dbot_vitl_clip-l14.py; official README row: 87.8).
#
# Official `beit` branch, DOWNSTREAM.md "ViT-L/16": as the ViT-B CLIP
# fine-tune but 50 epochs, 5 warmup epochs, lr 1e-4, layer decay 0.8,
# drop path 0.2; batch 1024 (32 x 32).
#
# Pretrained weights: dbot_vitl_clip-l14.py's run, or the official
# 87.8_clip_large_pre.pth converted with dbot_official_to_mm.py
# --backbone-only to checkpoints/dbot_vitl_clip-l14_1600e.pth.
_base_ = ['./vit-base-p16_dbot-clip-b16-ft_32xb32-coslr-100e_in1k.py']
from dbot_mm.engine.schedules import finetune_schedule  # noqa: E402
from dbot_mm.utils.config_arch import vit_dense  # noqa: E402

pretrained = '{{$DBOT_PRETRAINED:checkpoints/dbot_vitl_clip-l14_1600e.pth}}'
max_epochs = 50
warmup_epochs = 5

model = dict(
    backbone=vit_dense('vit-large-p16.py', '{{ fileDirname }}',
                       pretrained, drop_path_rate=0.2),
    head=dict(in_channels=1024))

optim_wrapper = dict(
    optimizer=dict(lr=1e-4), paramwise_cfg=dict(layer_decay_rate=0.8))

param_scheduler, train_cfg = finetune_schedule(max_epochs, warmup_epochs)
