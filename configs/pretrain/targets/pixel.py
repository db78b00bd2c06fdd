# Target study (paper Table 1), row "pixel": the decoder regresses MAE's
# per-patch normalised pixels, mean squared error over the masked patches
# only (no cls target). Everything else is dbot_vitb.py: same student,
# decoder, optimizer, data and epochs, in one stage (a pixel target cannot be
# bootstrapped).
#   tools/dist_train.sh configs/pretrain/targets/pixel.py 32
_base_ = ['../dbot_vitb.py']
from dbot_mm.engine.schedules import stage_recipe  # noqa: E402

stages = [0, 1600]

# ---- target keys
model = dict(
    teacher=dict(_delete_=True, type='PixelTarget', norm_pix=True),
    head=dict(loss=dict(_delete_=True, type='DistillL2Loss'),
              norm_target=False))  # PixelTarget normalises per patch

# ---- one stage: no StageBootstrapHook, one warmup + cosine
param_scheduler, custom_hooks = stage_recipe(
    stages, warmup_epochs=_base_.warmup_epochs)
