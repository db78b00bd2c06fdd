# Mini study (tools/reproduce/mini_study.py): dBOT pre-training of a small
# ViT on Fashion-MNIST (28 px zero-padded to 32, patch 4: an 8 x 8 grid) on
# 2 CPU cores. The study's presets (mini-study_{full,quick,reference}.py)
# inherit it and set their sizes; the study script then sets the stages,
# seed and paths per run. Run alone, this file is one 2-stage dBOT run:
#
#   python tools/dataset_converters/fashion_mnist.py \
#       --out data/mini_study/full/fashion_mnist --num-train 5000 \
#       --num-val 5000 --pad-to 32 --seed 0
#   python tools/train.py configs/reproduce/mini-study_dbot_fashion-mnist.py
_base_ = ['../_base_/dbot_fashion-mnist.py']  # model, data, optimizer
from dbot_mm.engine.schedules import stage_recipe  # noqa: E402

data_root = 'data/mini_study/full/fashion_mnist'
stages = [0, 6, 12]  # two stages of 6 epochs
teacher_depths = [6, 6]  # full-depth teacher from the start, as ViT-B
warmup_epochs = 1
img_size = _base_.img_size  # 32
patch_size = 4
# 128 wide x 6 deep, 4 heads of 32: ~2.5x cheaper than the 192-wide
# reference, so that 12 runs fit the time budget.
arch = dict(
    embed_dims=128, num_layers=6, num_heads=4, feedforward_channels=512)

model = _base_.dbot_model  # the base's model: decoder 96 x 2, no drop path
model.backbone.arch = arch
model.neck.update(
    num_patches=(img_size // patch_size)**2, embed_dim=arch['embed_dims'])
model.teacher.update(
    arch=arch,
    img_size=img_size,
    patch_size=patch_size,
    depth=teacher_depths[0])

# the base's augmentation, loaded by mmcv's loader
train_pipeline = [dict(type='LoadImageFromFile'), *_base_.train_pipeline[1:]]
train_dataloader = dict(
    dataset=dict(data_root=data_root, pipeline=train_pipeline))

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

# optim_wrapper: the base's (AdamW lr 1e-3, fp32)
train_cfg = dict(max_epochs=stages[-1])
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
default_hooks = dict(checkpoint=dict(interval=stages[-1], max_keep_ckpts=1))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0, diff_rank_seed=True)
