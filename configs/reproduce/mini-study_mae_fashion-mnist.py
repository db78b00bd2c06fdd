# Mini study: the pixel-target baseline, mmpretrain's MAE (normalised-pixel
# L2 loss on masked patches) with the same encoder, decoder size, data,
# optimizer and schedule as the dBOT runs of
# mini-study_dbot_fashion-mnist.py; one stage, no teacher.
_base_ = ['./mini-study_dbot_fashion-mnist.py']
from dbot_mm.engine.schedules import stage_recipe  # noqa: E402
from dbot_mm.utils.config_arch import mae_model  # noqa: E402

_arch = _base_.arch
_patch = _base_.patch_size
model = dict(
    _delete_=True,
    **mae_model(_arch, _base_.img_size, _patch, _base_.model.neck))

# one stage over all the epochs of the dBOT runs
param_scheduler, custom_hooks = stage_recipe(
    [0, _base_.stages[-1]],
    warmup_epochs=_base_.warmup_epochs,
    extra_hooks=_base_.custom_hooks[-1:])  # the kNN monitor
