# Target study (paper Table 1), row "dBOT, 3 stages": the teacher is
# bootstrapped twice (epochs 533 and 1066 of 1600, as
# configs/pretrain/dbot_vitb_3stage.py, the paper's det / seg recipe).
# Target keys as dbot_vitb.py; only the stage hook and schedule differ.
#   tools/dist_train.sh configs/pretrain/targets/dbot_3stage.py 32
_base_ = ['../dbot_vitb.py']
from dbot_mm.engine.schedules import stage_lr_schedulers  # noqa: E402

stages = [0, 533, 1066, 1600]
teacher_depths = [12, 12, 12]

# ---- target keys: unchanged (ViTTeacher bootstrapped at every boundary)

# ---- three stages
param_scheduler = stage_lr_schedulers(
    stages, warmup_epochs=_base_.warmup_epochs)
custom_hooks = [
    dict(
        type='StageBootstrapHook',
        stages=stages,
        teacher_depths=teacher_depths,
        reinit_student=True,
        reset_optimizer=False),
    dict(type='EpochSeedHook'),
    dict(type='NonFiniteLossHook'),
]
