# Mini study: Cascade Mask R-CNN fine-tuning on the Fashion-MNIST mosaic set
# (64 px canvases, COCO layout; synthetic scenes, real objects). It inherits
# the paper recipe of configs/det (ViT blocks -> 4 scales -> FPN, 4conv1fc
# GIoU box heads, AdamW + layer decay) and shrinks it to the mini study's
# 128-wide patch-4 ViT on 2 CPU cores:
# * the adapter scales (2, 1, 0.5, 0.25) turn the patch-4 grid into strides
#   2 / 4 / 8 / 16 (FPN adds 32), so anchors and RoI strides follow;
# * 64 FPN channels, 32 in the RoI head convs, fewer proposals and RoIs
#   (scenes hold at most 3 objects); BN, no AMP;
# * plain resize / flip instead of the DETR-style multi-scale crop.
# tools/reproduce/mini_study.py sets the checkpoint (or None: random init),
# the data size and the epochs.
_base_ = [
    '../det/'
    'cascade-mask-rcnn_dbot-vit-base-p16_fpn_4conv1fc-giou_amp-ms-crop-1x_coco.py'
]
from dbot_mm.engine.schedules import step_lr_schedulers  # noqa: E402

data_root = 'data/mini_study/full/fashion_mosaic/coco/'
classes = ('T-shirt_top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal',
           'Shirt', 'Sneaker', 'Bag', 'Ankle_boot')
canvas = 64
ch = 64  # FPN channels
head_ch = 32  # RoI head convs: the heads, not the ViT, dominate CPU time
arch = dict(
    embed_dims=128, num_layers=6, num_heads=4, feedforward_channels=512)
strides = [2, 4, 8, 16, 32]
pretrained = None

model = dict(
    backbone=dict(
        arch=dict(arch, _delete_=True),  # the base has the string "b"
        img_size=canvas,
        patch_size=4,
        out_indices=(1, 2, 3, 5),  # as (3, 5, 7, 11) of 12 blocks
        out_scales=(2, 1, 0.5, 0.25),
        adapter_norm_cfg=dict(type='BN', requires_grad=True),
        drop_path_rate=0.1,
        with_cp=False,
        init_cfg=None),
    data_preprocessor=dict(
        mean=[55.9] * 3, std=[84.9] * 3, bgr_to_rgb=False,
        pad_size_divisor=32),
    neck=dict(in_channels=[arch['embed_dims']] * 4, out_channels=ch),
    rpn_head=dict(
        in_channels=ch,
        feat_channels=ch,
        anchor_generator=dict(strides=strides)),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=ch,
                                featmap_strides=strides[:4]),
        mask_roi_extractor=dict(out_channels=ch,
                                featmap_strides=strides[:4]),
        bbox_head=[
            dict(h, in_channels=ch, conv_out_channels=head_ch,
                 fc_out_channels=128, num_classes=len(classes),
                 norm_cfg=dict(type='BN', requires_grad=True))
            for h in _base_.model.roi_head.bbox_head
        ],
        mask_head=dict(in_channels=ch, conv_out_channels=head_ch,
                       num_classes=len(classes))),
    # at most 3 objects per scene: 32 RoIs per image (8 positive) suffice
    train_cfg=dict(
        rpn=dict(sampler=dict(num=64)),
        rpn_proposal=dict(nms_pre=500, max_per_img=100),
        rcnn=[
            dict(r, sampler=dict(r['sampler'], num=32))
            for r in _base_.model.train_cfg.rcnn
        ]),
    # inference (not the heads' training) dominates a CPU eval: keep it lean
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=50),
        rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(canvas, canvas), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(canvas, canvas), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    batch_sampler=None,
    dataset=dict(
        _delete_=True,
        type='CocoDataset',
        data_root=data_root,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        metainfo=dict(classes=classes),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type='CocoDataset',
        data_root=data_root,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        metainfo=dict(classes=classes),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True,
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric=['bbox', 'segm'],
    format_only=False)
test_evaluator = val_evaluator

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(lr=4e-4),  # short schedule, batch 8
    clip_grad=dict(max_norm=10.0))
max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = step_lr_schedulers(
    max_epochs, milestones=[max_epochs - 1], warmup_iters=50)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
