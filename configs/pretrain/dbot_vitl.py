# dBOT ViT-L/16 pre-training on ImageNet-1k (official PRETRAIN.md): 32 GPUs
# x 128 images, 1600 epochs as two stages of 800. Stage 1 distils a depth-0
# teacher (patch embedding, position embedding and cls token of the
# student's initial weights); at epoch 800 the teacher becomes the stage-1
# student (24 blocks) and the student starts again. No gradient clipping.
#   tools/dist_train.sh configs/pretrain/dbot_vitl.py 32   (4 nodes x 8)
_base_ = [
    '../_base_/models/vit-large-p16.py',
    '../_base_/models/dbot.py',
    '../_base_/datasets/imagenet_dbot_pretrain.py',
    '../_base_/schedules/dbot_pretrain_1600e.py',
    '../_base_/default_runtime.py',
]
from dbot_mm.engine.schedules import stage_recipe  # noqa: E402

stages = [0, 800, 1600]  # stage boundaries in epochs (--stage_epochs)
teacher_depths = [0, 24]  # teacher blocks in each stage
warmup_epochs = 40  # linear warmup at the start of every stage
drop_path = 0.2  # student encoder and decoder (--sdpr)

model = _base_.dbot_model  # merged into vit-large-p16.py's `model`
model.backbone.drop_path_rate = drop_path
model.neck.drop_path_rate = drop_path
model.teacher.depth = teacher_depths[0]  # arch and sizes follow the student

# per-stage warmup + cosine; StageBootstrapHook, EpochSeedHook,
# NonFiniteLossHook
param_scheduler, custom_hooks = stage_recipe(
    stages,
    teacher_depths,
    warmup_epochs=warmup_epochs,
    reinit_student=True,
    reset_optimizer=False)  # official: AdamW state carries over
train_cfg = dict(max_epochs=stages[-1])
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=10, max_keep_ckpts=3))
