# dBOT ImageNet-1k fine-tuning, ViT-L/16 (official DOWNSTREAM.md): as ViT-B
# but 50 epochs, layer decay 0.75, drop path 0.25, grad clip 1.0.
_base_ = ['./vit-base-p16_dbot-ft_8xb128-coslr-100e_in1k.py']
from dbot_mm.utils.config_arch import vit_dense  # noqa: E402

pretrained = '{{$DBOT_PRETRAINED:checkpoints/dbot_vitl_1600e.pth}}'

model = dict(
    backbone=vit_dense('vit-large-p16.py', '{{ fileDirname }}',
                       pretrained, drop_path_rate=0.25),
    head=dict(in_channels=1024))

optim_wrapper = dict(
    paramwise_cfg=dict(layer_decay_rate=0.75), clip_grad=dict(max_norm=1.0))

max_epochs = 50
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - 5,
        by_epoch=True,
        begin=5,
        end=max_epochs,
        eta_min=1e-6,
        convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=max_epochs)
