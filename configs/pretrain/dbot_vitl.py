# dBOT ViT-L/16 pre-training on ImageNet-1k (official PRETRAIN.md): 32 GPUs
# x 128 images, 1600 epochs as two stages of 800. Stage 1 distils a depth-0
# teacher (patch embedding, position embedding and cls token of the
# student's initial weights); at epoch 800 the teacher becomes the stage-1
# student (24 blocks) and the student starts again. No gradient clipping.
#   tools/dist_train.sh configs/pretrain/dbot_vitl.py 32   (4 nodes x 8)
_base_ = [
    '../_base_/models/vit-large-p16.py',
    '../_base_/dbot_pretrain_in1k.py',  # data, optimizer, 2 x 800 epochs
]
from dbot_mm.engine.schedules import official_stage_recipe  # noqa: E402

teacher_depths = [0, 24]  # teacher blocks in each stage

model = _base_.dbot_model  # merged into vit-large-p16.py's `model`
model.teacher.depth = teacher_depths[0]  # arch and sizes follow the student

# per-stage warmup + cosine; StageBootstrapHook, EpochSeedHook,
# NonFiniteLossHook
param_scheduler, custom_hooks = official_stage_recipe(
    _base_.stages, teacher_depths, _base_.warmup_epochs)
