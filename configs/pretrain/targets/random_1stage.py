# Target study (paper Table 1), row "random teacher, 1 stage": distil from
# the randomly initialised teacher (the student's initial weights, 12
# blocks, no final norm) for the whole run, never bootstrapped. The target
# keys are dbot_vitb.py's; only the stage hook and the per-stage schedule go.
#   tools/dist_train.sh configs/pretrain/targets/random_1stage.py 32
_base_ = ['../dbot_vitb.py']
from dbot_mm.engine.schedules import stage_recipe  # noqa: E402

stages = [0, 1600]

# ---- target keys: unchanged (ViTTeacher, depth 12, student's init)

# ---- one stage: no StageBootstrapHook, one warmup + cosine
param_scheduler, custom_hooks = stage_recipe(
    stages, warmup_epochs=_base_.warmup_epochs)
