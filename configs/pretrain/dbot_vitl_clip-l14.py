# dBOT ViT-L/16 distilled from OpenAI CLIP-L/14 (official README row
# "ViT-L / CLIP-L/14": 87.8 IN-1k, 56.8 COCO APbox, 56.2 ADE20K mIoU).
#
# The teacher sees the image at 196 px (official --second_input_size 196):
# 14 x 14 patches of 14 px, the student's 14 x 14 grid of 16 px patches at
# 224 px. Its 16 x 16 position table (224 / 14) is resized on loading.
# As in dbot_vitb_clip-b16.py, the rest is dBOT's asymmetric recipe
# (dbot_vitl.py) in one stage of 1600 epochs, not the paper's symmetric
# BEiT-style student; targets are all tokens after ln_post, without CLIP's
# output projection.
#
# Teacher weights (no download at run time):
#   python tools/model_converters/clip_to_dbot_teacher.py \
#       ViT-L-14.pt checkpoints/clip-vit-l14_teacher.pth --img-size 196
#   tools/dist_train.sh configs/pretrain/dbot_vitl_clip-l14.py 32
_base_ = './dbot_vitl.py'
from dbot_mm.engine.schedules import stage_lr_schedulers  # noqa: E402

stages = [0, 1600]
teacher_checkpoint = \
    '{{$DBOT_TEACHER:checkpoints/clip-vit-l14_teacher.pth}}'

model = dict(
    teacher=dict(
        _delete_=True,
        type='PretrainedTeacher',
        checkpoint=teacher_checkpoint,
        prefix='backbone.',
        arch='l',  # 1024 wide, 24 blocks, 16 heads, as CLIP ViT-L/14
        img_size=196,
        patch_size=14,
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
            std=[68.5005327, 66.6321579, 70.32316305])),
    init_teacher_from_student=False)

param_scheduler = stage_lr_schedulers(stages, warmup_epochs=40)
train_cfg = dict(max_epochs=stages[-1])
# no StageBootstrapHook: one stage, fixed teacher
custom_hooks = [dict(type='EpochSeedHook'), dict(type='NonFiniteLossHook')]
