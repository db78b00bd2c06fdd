# dBOT ViT-H pre-training in three stages, the variant the paper uses for
# detection and segmentation (two stages are best for classification).
# Everything else as dbot_vith.py; 1600 epochs split as evenly as possible
# (the official scripts only give the two-stage split).
_base_ = ['./dbot_vith.py']
from dbot_mm.engine.schedules import official_stage_recipe  # noqa: E402

stages = [0, 533, 1066, 1600]
teacher_depths = [0, 32, 32]

param_scheduler, custom_hooks = official_stage_recipe(
    stages, teacher_depths, _base_.warmup_epochs)
