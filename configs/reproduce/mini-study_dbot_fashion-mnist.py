# Mini study (tools/reproduce/mini_study.py): dBOT pre-training of a small
# ViT on Fashion-MNIST (28 px zero-padded to 32, patch 4: an 8 x 8 grid) on
# 2 CPU cores. The study script overrides the data size, epochs, stages,
# seed and arch per run; run alone, this file is one 2-stage dBOT run of the
# study's default size:
#
#   python tools/dataset_converters/fashion_mnist.py \
#       --out data/mini_study/full/fashion_mnist --num-train 5000 \
#       --num-val 5000 --pad-to 32 --seed 0
#   python tools/train.py configs/reproduce/mini-study_dbot_fashion-mnist.py
_base_ = [
    '../_base_/models/vit-tiny-p4.py',
    '../_base_/models/dbot.py',
    '../_base_/default_runtime.py',
]
from dbot_mm.engine.schedules import stage_recipe  # noqa: E402

data_root = 'data/mini_study/full/fashion_mnist'
stages = [0, 6, 12]  # two stages of 6 epochs
teacher_depths = [6, 6]  # full-depth teacher from the start, as ViT-B
warmup_epochs = 1
img_size = 32
patch_size = 4
# 128 wide x 6 deep, 4 heads of 32: ~2.5x cheaper than the 192-wide
# reference, so that 12 runs fit the time budget.
arch = dict(
    embed_dims=128, num_layers=6, num_heads=4, feedforward_channels=512)

model = _base_.dbot_model  # merged into vit-tiny-p4.py's `model`
model.backbone.update(arch=arch, drop_path_rate=0.)
model.neck.update(
    num_patches=(img_size // patch_size)**2,
    embed_dim=arch['embed_dims'],
    decoder_embed_dim=96,
    decoder_depth=2,
    decoder_num_heads=3,
    drop_path_rate=0.)
model.teacher.update(
    arch=arch,
    img_size=img_size,
    patch_size=patch_size,
    depth=teacher_depths[0])

# Grey images (3 equal channels): Fashion-MNIST pixel mean / std of the
# padded 32 px images.
data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[55.9] * 3,
    std=[84.9] * 3,
    to_rgb=False)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=img_size,
        crop_ratio_range=(0.5, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=128,
    num_workers=0,
    persistent_workers=False,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/train.txt',
        data_prefix='train',
        pipeline=train_pipeline))

# kNN monitor on a subset (the ann files are in idx order, so the first
# images of a file cover all classes).
knn_monitor_size = (2000, 1000)  # bank, queries
_knn_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
_knn_loader = dict(batch_size=256, num_workers=0,
                   collate_fn=dict(type='default_collate'))
knn_train_dataloader = dict(
    _knn_loader,
    dataset=dict(
        type='CustomDataset', data_root=data_root,
        ann_file='meta/train.txt', data_prefix='train',
        indices=knn_monitor_size[0], pipeline=_knn_pipeline))
knn_val_dataloader = dict(
    _knn_loader,
    dataset=dict(
        type='CustomDataset', data_root=data_root, ann_file='meta/val.txt',
        data_prefix='val', indices=knn_monitor_size[1],
        pipeline=_knn_pipeline))

# weight decay grouped as the official main_pretrain.py (timm's
# add_weight_decay): biases and 1-D tensors exempt, cls / mask tokens decayed
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='FrozenSkipOptimWrapperConstructor',  # no per-param warnings
    optimizer=dict(
        type='AdamW', lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05),
    clip_grad=dict(max_norm=3.0),
    paramwise_cfg=dict(bias_decay_mult=0., flat_decay_mult=0.))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=stages[-1])
param_scheduler, custom_hooks = stage_recipe(
    stages,
    teacher_depths,
    warmup_epochs=warmup_epochs,
    extra_hooks=[
        dict(
            type='KNNMonitorHook',
            train_dataloader=knn_train_dataloader,
            val_dataloader=knn_val_dataloader,
            interval=1,
            k=20,
            feat='mean')
    ])
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=stages[-1], max_keep_ckpts=1))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0, diff_rank_seed=True)
