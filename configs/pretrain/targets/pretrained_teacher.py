# Target study (paper Table 1), row "pretrained teacher": distil from a
# fixed, already pre-trained ViT-B/16 (e.g. the released dBOT or MAE ViT-B
# pre-trained model), all tokens incl. cls, no final norm, as a dBOT teacher.
# One stage; the teacher is never bootstrapped nor seeded from the student.
#
# Teacher weights (no download at run time), converted to a backbone file:
#   python tools/model_converters/dbot_official_to_mm.py \
#       PRETRAINED_VITB.pth checkpoints/teacher_vitb_backbone.pth \
#       --backbone-only
#   DBOT_TEACHER=checkpoints/teacher_vitb_backbone.pth \
#       tools/dist_train.sh configs/pretrain/targets/pretrained_teacher.py 32
# Wider or CLIP teachers: configs/pretrain/dbot_vitb_teacher-vitl.py,
# dbot_vitb_clip-b16.py.
_base_ = ['../dbot_vitb.py']
from dbot_mm.engine.schedules import stage_recipe  # noqa: E402

stages = [0, 1600]
teacher_checkpoint = \
    '{{$DBOT_TEACHER:checkpoints/teacher_vitb_backbone.pth}}'

# ---- target keys
model = dict(
    teacher=dict(
        _delete_=True,
        type='PretrainedTeacher',
        checkpoint=teacher_checkpoint,
        prefix='backbone.',
        final_norm=False),  # arch and sizes follow the student (ViT-B/16)
    init_teacher_from_student=False)

# ---- one stage: no StageBootstrapHook, one warmup + cosine
param_scheduler, custom_hooks = stage_recipe(
    stages, warmup_epochs=_base_.warmup_epochs)
