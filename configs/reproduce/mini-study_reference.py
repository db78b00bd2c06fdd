# Preset `reference` of tools/reproduce/mini_study.py: the recipe the
# official code was measured at (192 x 6 ViT, decoder 128 x 4, 10k images,
# batch 256, 10 epochs per stage, fp32; kNN on the 10k test images after
# each stage), dBOT only, no transfer; see mini-study_full.py for what the
# script sets per run.
_base_ = ['./mini-study_dbot_fashion-mnist.py']
from dbot_mm.engine.schedules import monitored_stage_recipe  # noqa: E402,E501

mini_study = dict(
    seeds=[0],
    methods=['dbot_2stage'],
    num_train=10000,
    num_val=10000,
    blr=1e-3,
    knn_interval=0,  # at stage ends only
    analysis_images=256,
    mosaic=None,
    det=None,
    seg=None)
arch = dict(
    embed_dims=192, num_layers=6, num_heads=3, feedforward_channels=768)
stages = [0, 10, 20]
teacher_depths = [arch['num_layers']] * 2
batch_size = 256
knn_monitor_size = (10000, 10000)  # bank, queries

model = dict(
    backbone=dict(arch=arch),
    neck=dict(
        embed_dim=arch['embed_dims'],
        decoder_embed_dim=128,
        decoder_depth=4,
        decoder_num_heads=4),
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
