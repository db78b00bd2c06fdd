# dBOT in a few minutes on 2 CPU cores: the small ViT of vit-tiny-p4.py
# (32 px, patch 4) pre-trained on 10,000 Fashion-MNIST images in three stages
# of 5 epochs, bf16 autocast. The log shows the kNN of the randomly
# initialised student before the first step, the LR restarting at every
# stage, the teacher being bootstrapped at epochs 5 and 10, and at every stage
# end the kNN on Fashion-MNIST and on handwritten digits (never trained on)
# with its change against the start; a checkpoint is written at every stage
# end and the loss / kNN curves to <work_dir>/curves.png. How the recipe was
# chosen, and what it gives over seeds: docs/demo_study.md.
#
#   python tools/dataset_converters/fashion_mnist.py --out data/fashion_mnist \
#       --num-train 10000 --num-val 2000 --pad-to 32
#   python tools/dataset_converters/digits.py --out data/digits
#   python tools/train.py configs/pretrain/dbot_demo_fashion-mnist.py
_base_ = ['../_base_/dbot_fashion-mnist.py']  # model, data, optimizer
from dbot_mm.engine.schedules import stage_recipe  # noqa: E402

data_root = 'data/fashion_mnist'
digits_root = 'data/digits'  # never trained on: a second kNN check
num_train = 10000
batch_size = 128
stages = [0, 5, 10, 15]  # three stages of 5 epochs
teacher_depths = [4, 4, 4]  # all blocks of the 4-block teacher, as ViT-B
warmup_epochs = 1
model = _base_.dbot_model  # the base's model: decoder 96 x 2, no drop path
model.teacher.depth = teacher_depths[0]  # arch and sizes follow the student

train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(data_root=data_root, indices=num_train))


def _knn_loader(root, split, size=None):
    return dict(
        batch_size=256,
        num_workers=0,
        dataset=dict(
            type='CustomDataset',
            data_root=root,
            ann_file=f'meta/{split}.txt',
            data_prefix=split,
            indices=size,
            # kNN scores on every image or on none
            pipeline=[dict(type='RobustLoadImageFromFile', on_error='raise'),
                      dict(type='PackInputs')]))


def _knn_monitor(root, bank_size=None, **kwargs):
    return dict(
        type='KNNMonitorHook',
        train_dataloader=_knn_loader(root, 'train', bank_size),
        val_dataloader=_knn_loader(root, 'val'),
        interval=0,
        eval_at_start=True,
        cache_data=True,  # a few thousand small images: decode them once
        k=20,
        **kwargs)


# the base's AdamW (0.9, 0.95), weight decay 0.05 as the official
# add_weight_decay, grad clip 3.0; bf16 autocast: about 2x the fp32 step on
# CPU, and the kNN curve of fp32 within noise (docs/mini_study.md, the early
# kNN dip, row fp32)
optim_wrapper = dict(
    type='AutocastOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(
        lr=1.5e-3 * batch_size / 256,  # blr 1.5e-3, as the paper's rule
        fused=True))  # as the pretrain schedule (docs/performance.md)
train_cfg = dict(max_epochs=stages[-1])

# per-stage warmup + cosine; StageBootstrapHook, EpochSeedHook,
# NonFiniteLossHook, then the monitors
param_scheduler, custom_hooks = stage_recipe(
    stages,
    teacher_depths,
    warmup_epochs=warmup_epochs,
    extra_hooks=[
        # kNN of the student before the first step and at every stage end
        # (stages from StageBootstrapHook), with its change against the start
        _knn_monitor(data_root, bank_size=2000),
        _knn_monitor(digits_root, name='digits'),
        # <work_dir>/curves.png at the end
        dict(
            type='CurvePlotHook',
            labels={
                'knn': 'Fashion-MNIST',
                'knn/digits': 'digits (never trained on)'
            }),
    ])
default_hooks = dict(
    checkpoint=dict(interval=stages[1] - stages[0], max_keep_ckpts=-1))
auto_scale_lr = dict(base_batch_size=batch_size)  # --auto-scale-lr
