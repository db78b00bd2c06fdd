# dBOT ViT-B/16 distilled from a larger, dBOT-pretrained ViT-L/16 teacher
# (official README row "ViT-B / ViT-L": 84.6 IN-1k, 53.1 COCO APbox,
# 50.1 ADE20K mIoU). The decoder predicts the teacher's 1024 channels
# (DBOT sets neck.predict_dim from the teacher's width).
#
# One stage of 1600 epochs with the teacher fixed: a ViT-B student cannot be
# bootstrapped into a ViT-L teacher. Teacher as in dBOT: no final norm,
# ImageNet statistics.
#
# Teacher weights (no download at run time): the released ViT-L dBOT
# pre-trained model, converted to a backbone file:
#   python tools/model_converters/dbot_official_to_mm.py \
#       86.6_dbot_large_pre.pth checkpoints/dbot_vitl_backbone.pth \
#       --backbone-only
#   tools/dist_train.sh configs/pretrain/dbot_vitb_teacher-vitl.py 32
# A dbot_mm ViT-L run works as well (its student is under "backbone."):
#   DBOT_TEACHER=work_dirs/dbot_vitl/epoch_1600.pth tools/dist_train.sh ...
# The recipe is the target study's pretrained-teacher row
# (targets/pretrained_teacher.py) with a ViT-L teacher.
_base_ = './targets/pretrained_teacher.py'

teacher_checkpoint = '{{$DBOT_TEACHER:checkpoints/dbot_vitl_backbone.pth}}'

model = dict(
    teacher=dict(
        checkpoint=teacher_checkpoint,
        arch='l',
        img_size=224,
        patch_size=16))  # no final norm (tlayernorm=0), as the base
