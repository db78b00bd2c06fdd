# Mini study: UperNet fine-tuning on the Fashion-MNIST mosaic set (64 px
# canvases, ADE20K layout, 10 classes + ignored background; synthetic
# scenes, real objects). It inherits the paper recipe of configs/seg (ViT
# with relative position bias and layer scale, 4-scale adapter, UperNet +
# FCN auxiliary head, AdamW + layer decay, poly LR) and shrinks it to the
# mini study's 128-wide patch-4 ViT on 2 CPU cores: adapter scales
# (2, 1, 0.5, 0.25), 64-channel heads, BN, no AMP, whole-image inference
# (the canvas is the crop). tools/reproduce/mini_study.py sets the
# checkpoint (or None: random init), the data size and the iterations.
_base_ = ['../seg/upernet_dbot-vit-base-p16_8xb2-amp-160k_ade20k-512x512.py']

data_root = 'data/mini_study/full/fashion_mosaic/ade/'
classes = ('T-shirt_top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal',
           'Shirt', 'Sneaker', 'Bag', 'Ankle_boot')
canvas = 64
arch = dict(
    embed_dims=128, num_layers=6, num_heads=4, feedforward_channels=512)
pretrained = None
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    data_preprocessor=dict(
        mean=[55.9] * 3, std=[84.9] * 3, bgr_to_rgb=False,
        size=(canvas, canvas)),
    backbone=dict(
        arch=dict(arch, _delete_=True),  # the base has the string "b"
        img_size=canvas,
        patch_size=4,
        out_indices=(1, 2, 3, 5),
        out_scales=(2, 1, 0.5, 0.25),
        adapter_norm_cfg=norm_cfg,
        drop_path_rate=0.1,
        init_cfg=None),
    decode_head=dict(
        in_channels=[arch['embed_dims']] * 4,
        channels=64,
        num_classes=len(classes),
        norm_cfg=norm_cfg),
    auxiliary_head=dict(
        in_channels=arch['embed_dims'],
        channels=32,
        num_classes=len(classes),
        norm_cfg=norm_cfg),
    test_cfg=dict(_delete_=True, mode='whole'))

_dataset = dict(
    _delete_=True,
    type='BaseSegDataset',
    data_root=data_root,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True,
    metainfo=dict(classes=classes))
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _dataset,
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', reduce_zero_label=True),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PackSegInputs'),
        ]))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _dataset,
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', reduce_zero_label=True),
            dict(type='PackSegInputs'),
        ]))
test_dataloader = val_dataloader

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=4e-4))
max_iters = 400
warmup_iters = 50
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=warmup_iters,
         end=max_iters, by_epoch=False)
]
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
