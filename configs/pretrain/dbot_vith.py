# dBOT ViT-H/14 pre-training on ImageNet-1k (official PRETRAIN.md): 32 GPUs
# x 128 images, 1600 epochs as two stages of 800, patch 14 (16 x 16 patches
# of a 224 px crop), student drop path 0.3. Stage 1 distils a depth-0
# teacher (the student's initial embeddings); at epoch 800 the teacher
# becomes the stage-1 student (32 blocks). No gradient clipping. Everything
# else as dbot_vitl.py.
#   tools/dist_train.sh configs/pretrain/dbot_vith.py 32   (4 nodes x 8)
_base_ = ['./dbot_vitl.py']
from dbot_mm.engine.schedules import official_stage_recipe  # noqa: E402
from dbot_mm.utils.config_arch import vit_arch  # noqa: E402

teacher_depths = [0, 32]  # teacher blocks in each stage
drop_path = 0.3  # student encoder and decoder (--sdpr)

# dbot_vitl.py's dBOT model with the ViT-H/14 arch and this drop path
dbot_model = dict(
    backbone=dict(drop_path_rate=drop_path),
    neck=dict(drop_path_rate=drop_path))
model = dict(
    backbone=dict(
        vit_arch('vit-huge-p14.py', '{{ fileDirname }}'),
        drop_path_rate=drop_path),
    neck=dict(drop_path_rate=drop_path))

param_scheduler, custom_hooks = official_stage_recipe(
    _base_.stages, teacher_depths, _base_.warmup_epochs)
