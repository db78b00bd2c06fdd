# The ViT-B/16 recipe on the 3x schedule: 36 epochs, steps 27 and 33.
_base_ = ['./cascade-mask-rcnn_dbot-vit-base-p16_fpn_4conv1fc-giou_amp-ms-crop-1x_coco.py']

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[27, 33],
        gamma=0.1)
]
