# What the CPU demo (configs/pretrain/dbot_demo_fashion-mnist.py) and the
# mini study (configs/reproduce/mini-study_dbot_fashion-mnist.py) share: dBOT
# on the small ViT of vit-tiny-p4.py (32 px, patch 4) with a 96-wide,
# 2-block decoder and no drop path; grey 32 px Fashion-MNIST images
# (28 px zero-padded); AdamW grouped as the official code. Each config sets
# its data_root, stages, teacher depths, optimizer type / lr and hooks.
_base_ = [
    './models/vit-tiny-p4.py',
    './models/dbot.py',
    './default_runtime.py',
]

img_size = _base_.model.backbone.img_size

model = _base_.dbot_model  # merged into vit-tiny-p4.py's `model`
model.backbone.drop_path_rate = 0.
model.neck.update(
    decoder_embed_dim=96,
    decoder_depth=2,
    decoder_num_heads=3,
    drop_path_rate=0.)

# Grey images, loaded as 3 equal channels: Fashion-MNIST pixel mean / std of
# the padded 32 px images.
data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[55.9] * 3,
    std=[84.9] * 3,
    to_rgb=False)
train_pipeline = [
    dict(type='RobustLoadImageFromFile', on_error='skip'),
    dict(
        type='RandomResizedCrop',
        scale=img_size,
        crop_ratio_range=(0.5, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(  # dataset.data_root: set by each config
    batch_size=128,
    num_workers=0,
    persistent_workers=False,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CustomDataset',
        ann_file='meta/train.txt',
        data_prefix='train',
        pipeline=train_pipeline))

# weight decay grouped as the official main_pretrain.py (timm's
# add_weight_decay): biases and 1-D tensors exempt, cls / mask tokens decayed
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='FrozenSkipOptimWrapperConstructor',  # no per-param warnings
    optimizer=dict(
        type='AdamW', lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05),
    clip_grad=dict(max_norm=3.0),
    paramwise_cfg=dict(bias_decay_mult=0., flat_decay_mult=0.))
train_cfg = dict(type='EpochBasedTrainLoop')  # max_epochs: stages[-1]
default_hooks = dict(logger=dict(interval=10))
