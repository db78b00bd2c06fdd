# dBOT ADE20K semantic segmentation, ViT-B/16 distilled from CLIP-B/16
# (configs/pretrain/dbot_vitb_clip-b16.py; official README row: 52.9 mIoU):
# the symmetric (BEiT-style) student in the ViT-B UperNet recipe this
# inherits (blocks 3, 5, 7, 11 -> strides 4-32, UperNet 768 + FCN aux head,
# 1500 linear warmup iters then poly, 160k iters, 8 x 2 crops of 512, AMP,
# slide test crop 512 stride 341).
#
# Official sources: the `beit` branch DOWNSTREAM.md ("ViT-B/16" under
# ADE20K: run.sh ade20kv_seg beit_base, i.e. the `main` branch's iBOT-style
# evaluation/semantic_segmentation/configs/upernet/beit_base_512_ade20k_
# 160k.py) with optimizer.lr=3e-5, layer_decay_rate=0.85,
# drop_path_rate=0.1, use_checkpoint=True. That config's data, heads and
# schedule are the asymmetric row's (mae_segmentation) ones; its backbone is
# BEiT without absolute position embedding, relative position bias per block
# (the shared pre-training table copied into every block by its checkpoint
# loader) and layer scale (init 0.1).
# Here (symmetric_backbone):
#   use_rel_pos_bias=True (as the base), layer_scale_init_value=0.1: the
#     layout DBOTSymmetricViT saves, so tables and layer scales load from the
#     checkpoint instead of starting from zero / 1.0; the student's zero
#     pos_embed loads (trainable here; the official BEiT has none). Tables
#     are resized bicubically to the 32 x 32 grid (the official loader uses
#     BEiT's geometric interpolation);
#   pretrained_new_keys: only the adapter may be absent from the checkpoint
#     (an asymmetric dBOT file stops with PretrainedLoadError);
#   lr 3e-5, layer decay 0.85, drop path 0.1, activation checkpointing
#     (DOWNSTREAM.md).
# Unchanged from the asymmetric ViT-B row: wd 0.05 and its no-decay rules
# (the official constructor also decays the 2-D relative position tables),
# warmup / poly schedule, data, heads.
#
# Weights: a dbot_mm run of dbot_vitb_clip-b16.py (published or not), or the
# official 85.7_clip_base_pre.pth converted with
#   python tools/model_converters/dbot_official_to_mm.py \
#       85.7_clip_base_pre.pth checkpoints/dbot_vitb_clip-b16_1600e.pth \
#       --backbone-only
# DBOT_PRETRAINED=... overrides.
_base_ = ['./upernet_dbot-vit-base-p16_8xb2-amp-160k_ade20k-512x512.py']
from dbot_mm.utils.config_arch import symmetric_backbone  # noqa: E402

pretrained = '{{$DBOT_PRETRAINED:checkpoints/dbot_vitb_clip-b16_1600e.pth}}'

model = dict(
    backbone=symmetric_backbone(
        pretrained, drop_path_rate=0.1, with_cp=True))

optim_wrapper = dict(
    optimizer=dict(lr=3e-5), paramwise_cfg=dict(layer_decay_rate=0.85))
