# Target study (paper Table 1), row "HOG": the decoder regresses MaskFeat's
# HOG features (mmpretrain HOGGenerator: 9 bins, 8 px cells, 16 px Gaussian
# window -> 108 values per 16 px patch), mean squared error over the masked
# patches only (no cls target, no further normalisation). Everything else is
# dbot_vitb.py, in one stage.
#   tools/dist_train.sh configs/pretrain/targets/hog.py 32
_base_ = ['../dbot_vitb.py']
from dbot_mm.engine.schedules import stage_recipe  # noqa: E402

stages = [0, 1600]

# ---- target keys
model = dict(
    teacher=dict(
        _delete_=True, type='HOGTarget', nbins=9, pool=8,
        gaussian_window=16),
    head=dict(loss=dict(_delete_=True, type='DistillL2Loss'),
              norm_target=False))  # HOG cells are L2-normalised already

# ---- one stage: no StageBootstrapHook, one warmup + cosine
param_scheduler, custom_hooks = stage_recipe(
    stages, warmup_epochs=_base_.warmup_epochs)
