# dBOT ViT-L/16 distilled from a dBOT-pretrained ViT-H/14 teacher (official
# README row "ViT-L / ViT-H": 86.8 IN-1k, 56.1 COCO APbox, 55.2 ADE20K mIoU):
# the ViT-L recipe of dbot_vitl.py (drop path 0.2, no gradient clipping) with
# the teacher of configs/_base_/models/dbot_teacher_vit-huge-p14.py, fixed
# for one stage of 1600 epochs (a ViT-L student is not bootstrapped into a
# ViT-H teacher; the paper gives no schedule for these rows).
#   tools/dist_train.sh configs/pretrain/dbot_vitl_teacher-vith.py 32
_base_ = [
    './dbot_vitl.py',
    '../_base_/models/dbot_teacher_vit-huge-p14.py',
]
from dbot_mm.engine.schedules import stage_recipe  # noqa: E402

stages = [0, 1600]

model = dict(
    teacher=dict(_delete_=True, **_base_.dbot_vith_teacher),
    init_teacher_from_student=False)

param_scheduler, custom_hooks = stage_recipe(stages, warmup_epochs=40)
train_cfg = dict(max_epochs=stages[-1])
