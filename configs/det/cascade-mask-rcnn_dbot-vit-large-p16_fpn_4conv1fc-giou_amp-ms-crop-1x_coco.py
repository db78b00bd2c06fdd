# dBOT COCO, ViT-L/16: the ViT-B recipe with blocks (7, 11, 15, 23) and
# 1024-wide FPN inputs (official vit_large config + DOWNSTREAM.md).
_base_ = ['./cascade-mask-rcnn_dbot-vit-base-p16_fpn_4conv1fc-giou_amp-ms-crop-1x_coco.py']
from dbot_mm.utils.config_arch import vit_dense  # noqa: E402

pretrained = '{{$DBOT_PRETRAINED:checkpoints/dbot_vitl_1600e.pth}}'

model = dict(
    backbone=vit_dense(
        'vit-large-p16.py', '{{ fileDirname }}', pretrained,
        out_indices=(7, 11, 15, 23)),
    neck=dict(in_channels=[1024, 1024, 1024, 1024]))
