# dBOT COCO detection / instance segmentation, ViT-B/16 distilled from
# CLIP-B/16 (configs/pretrain/dbot_vitb_clip-b16.py; official README row:
# 53.6 APbox): the symmetric (BEiT-style) student of the CLIP rows in the
# ViT-B recipe this inherits (Cascade Mask R-CNN, 4conv1fc SyncBN heads,
# GIoU, DETR-style crops, AdamW lr 1e-4, 12 epochs, steps 8 and 11, 8 x 2
# images, AMP, activation checkpointing).
#
# Official sources: the `beit` branch DOWNSTREAM.md ("ViT-B/16" under COCO:
# run.sh cascade_coco_det beit_base, samples_per_gpu=2, steps 8,11, 12
# epochs, use_checkpoint) with the `main` branch detection code and its
# evaluation/object_detection/configs/cascade_rcnn/beit_base_giou_4conv1f_
# coco_3x.py, which differs from the asymmetric ViT-B config in the backbone
# only: BEiT with per-block relative position bias (the shared pre-training
# table copied into every block by its checkpoint loader), no absolute
# position embedding, layer scale (init 0.1), drop path 0.1, layer decay 0.8
# (not overridden by DOWNSTREAM.md, unlike the asymmetric rows' 0.75).
# Here (symmetric_backbone):
#   use_rel_pos_bias=True, layer_scale_init_value=0.1: the layout
#     DBOTSymmetricViT saves (its shared table is listed under every block);
#     the zero pos_embed of the student loads (trainable here, the official
#     BEiT has none). The tables are resized bicubically to the 42 x 68
#     grid (the official loader uses BEiT's geometric interpolation);
#   pretrained_new_keys: only the adapter may be absent from the checkpoint,
#     so a file without relative position tables or layer scales (an
#     asymmetric dBOT run) stops with PretrainedLoadError instead of starting
#     them from zero / 0.1;
#   drop_path_rate=0.1, layer_decay_rate=0.8 (beit_base config file).
# Unchanged from the asymmetric ViT-B row: lr 1e-4, wd 0.05 and its no-decay
# rules, heads, data, schedule.
#
# NB: DOWNSTREAM.md's command that produced 53.6 adds
# use_abs_pos_emb=True use_rel_pos_bias=False use_shared_rel_pos_bias=False
# and says "The model are pre-trained with absolute position embedding",
# i.e. that student was not the PRETRAIN.md one (shared relative position
# bias, no absolute embedding; what dbot_vitb_clip-b16.py trains). That run
# is cascade-mask-rcnn_dbot-clip-b16-vit-base-p16-abs-pos_fpn_... .
#
# Weights: a dbot_mm run of dbot_vitb_clip-b16.py (published or not), or the
# official 85.7_clip_base_pre.pth converted with
#   python tools/model_converters/dbot_official_to_mm.py \
#       85.7_clip_base_pre.pth checkpoints/dbot_vitb_clip-b16_1600e.pth \
#       --backbone-only
# (the file the CLIP-row ImageNet config reads too); DBOT_PRETRAINED=...
# overrides.
_base_ = [
    './cascade-mask-rcnn_dbot-vit-base-p16_fpn_4conv1fc-giou_amp-ms-crop-1x_'
    'coco.py'
]
from dbot_mm.utils.config_arch import symmetric_backbone  # noqa: E402

pretrained = '{{$DBOT_PRETRAINED:checkpoints/dbot_vitb_clip-b16_1600e.pth}}'

model = dict(backbone=symmetric_backbone(pretrained, drop_path_rate=0.1))

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.8))
