# ImageNet-1k fine-tuning of the dBOT ViT-H/14 distilled from CLIP-L/14
# (configs/pretrain/dbot_vith_clip-l14.py; official README row: 88.5).
#
# Official `beit` branch, DOWNSTREAM.md "ViT-H/14": as the ViT-B CLIP
# fine-tune but huge_patch14_224, 50 epochs, 5 warmup epochs, lr 5e-5,
# layer decay 0.85, drop path 0.3; batch 1024 (32 x 32; the official run
# uses DeepSpeed fp16, here AMP).
#
# Pretrained weights: dbot_vith_clip-l14.py's run, or the official
# 88.5_clip_huge_pre.pth converted with dbot_official_to_mm.py
# --backbone-only to checkpoints/dbot_vith_clip-l14_1600e.pth.
_base_ = ['./vit-large-p16_dbot-clip-l14-ft_32xb32-coslr-50e_in1k.py']
from dbot_mm.utils.config_arch import vit_dense  # noqa: E402

pretrained = '{{$DBOT_PRETRAINED:checkpoints/dbot_vith_clip-l14_1600e.pth}}'


# epochs, warmup and schedule as the ViT-L/16 CLIP-row config
model = dict(
    backbone=vit_dense('vit-huge-p14.py', '{{ fileDirname }}',
                       pretrained, drop_path_rate=0.3),
    head=dict(in_channels=1280))

optim_wrapper = dict(
    optimizer=dict(lr=5e-5), paramwise_cfg=dict(layer_decay_rate=0.85))
