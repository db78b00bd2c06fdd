# Linear probing of a dBOT ViT-B/16 (MAE protocol, as in mmpretrain): frozen
# encoder, final LayerNorm, cls token, BatchNorm without affine + linear
# classifier, LARS lr 6.4 (0.1 x 16384 / 256), 90 epochs, 10 warmup.
_base_ = [
    'mmpretrain::mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py'
]
from dbot_mm.utils.config_arch import vit_dense  # noqa: E402
custom_imports = dict(imports=['dbot_mm'], allow_failed_imports=False)

pretrained = '{{$DBOT_PRETRAINED:checkpoints/dbot_vitb_1600e.pth}}'

model = dict(
    backbone=vit_dense(
        'vit-base-p16.py', '{{ fileDirname }}', pretrained,
        img_size=224,
        frozen_stages=12,  # = num_layers: the whole encoder
        out_type='cls_token',
        final_norm=True),
    neck=dict(input_features=768),
    head=dict(in_channels=768))
