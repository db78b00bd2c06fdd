# dBOT COCO detection / instance segmentation, ViT-B/16 (official
# evaluation/object_detection + DOWNSTREAM.md): Cascade Mask R-CNN, ViT
# blocks (3, 5, 7, 11) -> strides 4/8/16/32 (deconv x2 x2, deconv x2,
# identity, max-pool) -> FPN 256; 4conv1fc box heads with SyncBN and GIoU
# loss (weight 10); DETR-style multi-scale resize / crop; AdamW lr 1e-4,
# wd 0.05, layer decay 0.75; 12 epochs, steps 8 and 11 (the reported
# numbers); 8 GPUs x 2 images; AMP; activation checkpointing.
# mmdet's ConvNeXt "4conv1fc-giou_amp-ms-crop-3x" config is this recipe;
# we inherit it and replace backbone, neck input, optimizer and schedule.
_base_ = [
    'mmdet::convnext/'
    'cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
]
from dbot_mm.engine.schedules import step_lr_schedulers  # noqa: E402
from dbot_mm.engine.optimizers import layer_decay_adamw  # noqa: E402
from dbot_mm.utils.config_arch import vit_dense  # noqa: E402
custom_imports = dict(imports=['dbot_mm'], allow_failed_imports=False)

# The one place for the pretrained weights: a dbot_mm pretraining checkpoint
# (encoder under "backbone.") or a published backbone. Override with
# DBOT_PRETRAINED=... or --cfg-options model.backbone.init_cfg.checkpoint=...
pretrained = '{{$DBOT_PRETRAINED:checkpoints/dbot_vitb_1600e.pth}}'

model = dict(
    backbone=vit_dense(
        'vit-base-p16.py', '{{ fileDirname }}', pretrained,
        _delete_=True,
        # trainable position grid 42 x 68, as the official (672, 1092)
        img_size=(672, 1088),
        out_indices=(3, 5, 7, 11),
        out_scales=(4, 2, 1, 0.5),
        adapter_norm_cfg=dict(type='SyncBN', requires_grad=True),
        drop_path_rate=0.2,
        with_cp=True),
    neck=dict(in_channels=[768, 768, 768, 768]))

optim_wrapper = layer_decay_adamw(0.75)

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
# linear warmup over 500 iterations, LR x 0.1 at epochs 8 and 11
param_scheduler = step_lr_schedulers(max_epochs, milestones=[8, 11])

# 8 GPUs x 2 images
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)
