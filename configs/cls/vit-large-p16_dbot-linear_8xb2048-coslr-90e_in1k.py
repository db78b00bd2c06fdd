# Linear probing of a dBOT ViT-L/16; see the ViT-B config.
_base_ = ['./vit-base-p16_dbot-linear_8xb2048-coslr-90e_in1k.py']
from dbot_mm.utils.config_arch import vit_dense  # noqa: E402

pretrained = '{{$DBOT_PRETRAINED:checkpoints/dbot_vitl_1600e.pth}}'

model = dict(
    backbone=vit_dense('vit-large-p16.py', '{{ fileDirname }}',
                       pretrained, frozen_stages=24),
    neck=dict(input_features=1024),
    head=dict(in_channels=1024))
