# dBOT ViT-B/16 distilled from a dBOT-pretrained ViT-H/14 teacher (official
# README row "ViT-B / ViT-H": 84.6 IN-1k, 53.5 COCO APbox, 50.8 ADE20K mIoU):
# the recipe of dbot_vitb_teacher-vitl.py (one 1600-epoch stage, teacher
# fixed) with the teacher of configs/_base_/models/dbot_teacher_vit-huge-p14.py
# (196 px input, 14 x 14 tokens of 1280 channels; the decoder predicts 1280).
#   tools/dist_train.sh configs/pretrain/dbot_vitb_teacher-vith.py 32
_base_ = [
    './dbot_vitb_teacher-vitl.py',
    '../_base_/models/dbot_teacher_vit-huge-p14.py',
]

teacher_checkpoint = _base_.dbot_vith_teacher.checkpoint
model = dict(teacher=dict(_delete_=True, **_base_.dbot_vith_teacher))
