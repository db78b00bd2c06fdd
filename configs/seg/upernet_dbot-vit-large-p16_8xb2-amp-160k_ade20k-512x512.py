# dBOT ADE20K, ViT-L/16: the ViT-B recipe with blocks (7, 11, 15, 23),
# UperNet channels 1024, and DOWNSTREAM.md's ViT-L optimizer: lr 3e-5,
# layer decay 0.95 (drop path 0.2 as for B).
_base_ = ['./upernet_dbot-vit-base-p16_8xb2-amp-160k_ade20k-512x512.py']
from dbot_mm.utils.config_arch import vit_dense  # noqa: E402

pretrained = '{{$DBOT_PRETRAINED:checkpoints/dbot_vitl_1600e.pth}}'

model = dict(
    backbone=vit_dense(
        'vit-large-p16.py', '{{ fileDirname }}', pretrained,
        out_indices=(7, 11, 15, 23)),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024], channels=1024),
    auxiliary_head=dict(in_channels=1024))

optim_wrapper = dict(
    optimizer=dict(lr=3e-5), paramwise_cfg=dict(layer_decay_rate=0.95))
