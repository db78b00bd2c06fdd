# Preset `quick` of tools/reproduce/mini_study.py: every step of the study
# once, on toy sizes (a couple of minutes); see mini-study_full.py for what
# the script sets per run.
_base_ = ['./mini-study_dbot_fashion-mnist.py']
from dbot_mm.engine.schedules import monitored_stage_recipe  # noqa: E402,E501

mini_study = dict(
    seeds=[0],
    methods=['mae', 'random_teacher', 'dbot_2stage', 'dbot_3stage'],
    num_train=192,
    num_val=128,
    blr=1e-3,
    knn_interval=2,
    analysis_images=32,
    mosaic=dict(
        num_train=16, num_val=8, canvas=64, objects=(1, 3),
        scale=(0.75, 1.25)),
    det=dict(epochs=1, batch_size=8, lr=4e-4, warmup=2),
    seg=dict(iters=8, batch_size=8, lr=4e-4, warmup=2))
arch = dict(
    embed_dims=64, num_layers=4, num_heads=2, feedforward_channels=128)
stages = [0, 3, 6]
teacher_depths = [arch['num_layers']] * 2
batch_size = 64
knn_monitor_size = (192, 128)  # bank, queries

model = dict(
    backbone=dict(arch=arch),
    neck=dict(
        embed_dim=arch['embed_dims'],
        decoder_embed_dim=32,
        decoder_depth=1,
        decoder_num_heads=2),
    teacher=dict(arch=arch, depth=teacher_depths[0]))
train_dataloader = dict(batch_size=batch_size)
optim_wrapper = dict(optimizer=dict(lr=mini_study['blr'] * batch_size / 256))
train_cfg = dict(max_epochs=stages[-1])
(knn_train_dataloader, knn_val_dataloader, param_scheduler,
 custom_hooks) = monitored_stage_recipe(_base_, stages, teacher_depths,
                                        knn_monitor_size,
                                        mini_study['knn_interval'])
default_hooks = dict(
    logger=dict(interval=50), checkpoint=dict(interval=stages[-1]))
