# A released (or dbot_mm-trained) dBOT ViT-H/14 as the fixed teacher of a
# /16 student, for the official README rows "ViT-B / ViT-H" and
# "ViT-L / ViT-H". A base file may not define a second `model`, so this one
# is named `dbot_vith_teacher`; a pretrain config lists it as a base and
# writes
#   model = dict(teacher=dict(_delete_=True, **_base_.dbot_vith_teacher))
#
# The teacher sees the crop resized to 196 px: 14 x 14 patches of 14 px, the
# grid of a /16 student at 224 px (its 16 x 16 position table is resized on
# loading). Teacher as in dBOT: no final norm, ImageNet statistics.
#
# Weights (no download at run time):
#   python tools/model_converters/dbot_official_to_mm.py \
#       87.4_dbot_huge_pre.pth checkpoints/dbot_vith_backbone.pth \
#       --backbone-only
# or a dbot_mm ViT-H run: DBOT_TEACHER=work_dirs/dbot_vith/epoch_1600.pth


def _arch(name):
    """The arch is defined once (configs/_base_/models/). Other configs use
    dbot_mm.utils.config_arch.vit_arch; a file without `_base_` that imports
    dbot_mm is parsed by mmengine as a lazy-import config, so this one reads
    the arch with mmengine's Config alone."""
    from mmengine.config import Config
    return Config.fromfile('{{ fileDirname }}/' + name).model.backbone


dbot_vith_teacher = dict(
    _arch('vit-huge-p14.py'),
    type='PretrainedTeacher',
    checkpoint='{{$DBOT_TEACHER:checkpoints/dbot_vith_backbone.pth}}',
    prefix='backbone.',
    img_size=196,
    final_norm=False)  # tlayernorm=0
