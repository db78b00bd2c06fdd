# dBOT ViT-B/16 distilled from OpenAI CLIP-B/16 with dBOT's *asymmetric*
# recipe: a variant, not the paper's row. The paper's CLIP rows (85.7 IN-1k,
# 53.6 COCO APbox, 52.9 ADE20K mIoU) use the symmetric BEiT-style student of
# the official `beit` branch: configs/pretrain/dbot_vitb_clip-b16.py.
#
# Here the teacher is the CLIP tower and everything else is dBOT's
# asymmetric recipe (dbot_vitb.py: MAE encoder on 25 % visible patches, 8-block
# decoder, smooth-L1 on normalised targets) in one stage of 1600 epochs (the
# official --stage_epochs 0 1600): a fixed teacher is never bootstrapped.
# Targets: all tokens after ln_post (post_patch_norm=True), without CLIP's
# output projection (see PretrainedTeacher.out_proj_dims).
#
# Teacher weights (no download at run time):
#   python tools/model_converters/clip_to_dbot_teacher.py \
#       ViT-B-16.pt checkpoints/clip-vit-b16_teacher.pth
#   tools/dist_train.sh configs/pretrain/dbot_vitb_clip-b16_asym.py 32
# The recipe is the target study's pretrained-teacher row
# (targets/pretrained_teacher.py) with CLIP's tower as the teacher.
_base_ = './targets/pretrained_teacher.py'

teacher_checkpoint = \
    '{{$DBOT_TEACHER:checkpoints/clip-vit-b16_teacher.pth}}'

model = dict(
    teacher=dict(
        checkpoint=teacher_checkpoint,
        arch='b',  # 768 wide, 12 blocks, 12 heads, as CLIP ViT-B/16
        img_size=224,
        patch_size=16,
        pre_norm=True,  # ln_pre
        final_norm=True,  # ln_post on every token
        norm_cfg=dict(type='LN', eps=1e-5),
        patch_cfg=dict(bias=False),
        layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU')),
        # the preprocessor's ImageNet statistics -> CLIP's
        data_norm=dict(
            mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
        teacher_norm=dict(
            mean=[122.7709383, 116.7460125, 104.09373615],
            std=[68.5005327, 66.6321579, 70.32316305])))
