# Preset `full` of tools/reproduce/mini_study.py, the study reported in
# docs/mini_study.md (~70 min on 2 idle cores): the sizes of every
# pretraining run and, in `mini_study`, the study around them. The script
# runs this config once per method and seed and sets only the method's
# model and stages, the seed, the data root and the work dir; run alone, it
# is the study's 2-stage dBOT run. The encoder (ViT 128 x 6), decoder
# (96 x 2), 12 epochs in 2 stages and 1 warmup epoch per stage are the
# base's.
_base_ = ['./mini-study_dbot_fashion-mnist.py']
from dbot_mm.engine.schedules import monitored_stage_recipe  # noqa: E402,E501

mini_study = dict(
    seeds=[0, 1, 2],
    methods=['mae', 'random_teacher', 'dbot_2stage', 'dbot_3stage'],
    num_train=4000,  # pretraining set, kNN bank and probe training set
    num_val=4000,
    blr=1e-3,  # lr = blr x batch / 256, the official rule
    knn_interval=2,  # kNN monitor every 2 epochs (and at stage ends)
    analysis_images=256,  # val images of the property plots
    mosaic=dict(
        num_train=600,
        num_val=200,
        canvas=64,
        objects=(1, 3),
        scale=(0.75, 1.25)),
    det=dict(epochs=4, batch_size=8, lr=4e-4, warmup=50),
    seg=dict(iters=400, batch_size=8, lr=4e-4, warmup=50))
batch_size = 128
knn_monitor_size = (1000, 500)  # bank, queries

train_dataloader = dict(batch_size=batch_size)
optim_wrapper = dict(optimizer=dict(lr=mini_study['blr'] * batch_size / 256))
(knn_train_dataloader, knn_val_dataloader, param_scheduler,
 custom_hooks) = monitored_stage_recipe(_base_, _base_.stages, _base_.teacher_depths,
                                        knn_monitor_size,
                                        mini_study['knn_interval'])
default_hooks = dict(logger=dict(interval=50))
