# dBOT ViT-B/16 pre-training on ImageNet-1k (official PRETRAIN.md): 32 GPUs
# x 128 images, 1600 epochs as two stages of 800. Stage 1 distils a random
# teacher (the student's own initial weights, 12 blocks); at epoch 800 the
# teacher becomes the stage-1 student and the student starts again.
#   tools/dist_train.sh configs/pretrain/dbot_vitb.py 32   (4 nodes x 8)
_base_ = [
    '../_base_/models/vit-base-p16.py',
    '../_base_/dbot_pretrain_in1k.py',  # data, optimizer, 2 x 800 epochs
]
from dbot_mm.engine.schedules import official_stage_recipe  # noqa: E402

teacher_depths = [12, 12]  # teacher blocks in each stage

model = _base_.dbot_model  # merged into vit-base-p16.py's `model`
model.teacher.depth = teacher_depths[0]  # arch and sizes follow the student

optim_wrapper = dict(clip_grad=dict(max_norm=3.0))  # ViT-B only
# per-stage warmup + cosine; StageBootstrapHook, EpochSeedHook,
# NonFiniteLossHook
param_scheduler, custom_hooks = official_stage_recipe(
    _base_.stages, teacher_depths, _base_.warmup_epochs)
