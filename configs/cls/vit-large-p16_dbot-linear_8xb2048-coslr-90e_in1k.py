# Linear probing of a dBOT ViT-L/16; see the ViT-B config.
_base_ = ['./vit-base-p16_dbot-linear_8xb2048-coslr-90e_in1k.py']

pretrained = '{{$DBOT_PRETRAINED:checkpoints/dbot_vitl_1600e.pth}}'


def _arch(name):
    from mmengine.config import Config
    return Config.fromfile('{{ fileDirname }}/../_base_/models/' +
                           name).model.backbone


model = dict(
    backbone=dict(
        _arch('vit-large-p16.py'),
        frozen_stages=24,
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(input_features=1024),
    head=dict(in_channels=1024))
