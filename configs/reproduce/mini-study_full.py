# Preset `full` of tools/reproduce/mini_study.py, the study reported in
# docs/mini_study.md (~70 min on 2 idle cores): the sizes of every
# pretraining run and, in `mini_study`, the study around them. The script
# runs this config once per method and seed and sets only the method's
# model and stages, the seed, the data root and the work dir; run alone, it
# is the study's 2-stage dBOT run. The encoder (ViT 128 x 6), decoder
# (96 x 2), 12 epochs in 2 stages and 1 warmup epoch per stage are the
# base's.
_base_ = ['./mini-study_dbot_fashion-mnist.py']
from dbot_mm.engine.schedules import stage_recipe  # noqa: E402

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
knn_train_dataloader = dict(
    _base_.knn_train_dataloader,
    dataset=dict(
        _base_.knn_train_dataloader.dataset, indices=knn_monitor_size[0]))
knn_val_dataloader = dict(
    _base_.knn_val_dataloader,
    dataset=dict(
        _base_.knn_val_dataloader.dataset, indices=knn_monitor_size[1]))
param_scheduler, custom_hooks = stage_recipe(
    _base_.stages,
    _base_.teacher_depths,
    warmup_epochs=_base_.warmup_epochs,
    extra_hooks=[
        dict(
            _base_.custom_hooks[-1],  # the kNN monitor
            train_dataloader=knn_train_dataloader,
            val_dataloader=knn_val_dataloader,
            interval=mini_study['knn_interval'],
            eval_at_start=True)  # every curve starts at random init
    ])
default_hooks = dict(logger=dict(interval=50))
