# ImageNet-1k fine-tuning of the dBOT ViT-B/16 distilled from CLIP-B/16
# (configs/pretrain/dbot_vitb_clip-b16.py; official README row: 85.7).
#
# Official `beit` branch, DOWNSTREAM.md "ViT-B/16" over run.sh /
# run_finetune.py defaults: 100 epochs, batch 1024 (32 GPUs x 32), AdamW
# lr 2e-4 (used as is, not rescaled by the batch), betas (0.9, 0.999), wd
# 0.05, layer decay 0.65, drop path 0.1, 20 warmup epochs from 0 then cosine
# to 1e-6, RandAugment m9-mstd0.5-inc1, RandomErasing 0.25, mixup 0.8 /
# cutmix 1.0, label smoothing 0.1, mean pooling + LayerNorm (fc_norm),
# relative position bias per block (the shared pretraining table copied into
# each), layer scale, no trained absolute position embedding (the zero table
# of the pretraining checkpoint, trainable here), relative position tables
# decayed (--disable_weight_decay_on_rel_pos_bias off). The rest is the
# dBOT ViT-B fine-tuning config this inherits.
#
# Pretrained weights: a dbot_mm run of dbot_vitb_clip-b16.py (backbone.*,
# loads as is) or the official 85.7_clip_base_pre.pth converted with
#   python tools/model_converters/dbot_official_to_mm.py \
#       85.7_clip_base_pre.pth checkpoints/dbot_vitb_clip-b16_1600e.pth \
#       --backbone-only
_base_ = ['../vit-base-p16_dbot-ft_8xb128-coslr-100e_in1k.py']
from dbot_mm.engine.schedules import finetune_schedule  # noqa: E402

pretrained = '{{$DBOT_PRETRAINED:checkpoints/dbot_vitb_clip-b16_1600e.pth}}'
max_epochs = 100
warmup_epochs = 20  # run.sh --warmup_epochs 20

model = dict(
    backbone=dict(
        use_rel_pos_bias=True,
        layer_scale_init_value=0.1,
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint=pretrained)))

optim_wrapper = dict(
    optimizer=dict(lr=2e-4),
    paramwise_cfg=dict(
        layer_decay_rate=0.65,
        custom_keys={'relative_position_bias_table': dict(decay_mult=1.)}))

param_scheduler, train_cfg = finetune_schedule(max_epochs, warmup_epochs)

# 32 GPUs x 32 = 1024 images per step, as the official runs
train_dataloader = dict(batch_size=32)
auto_scale_lr = dict(base_batch_size=1024)
