# dBOT ImageNet-1k fine-tuning, ViT-B/16 (official DOWNSTREAM.md / run.sh):
# 100 epochs, batch 1024, AdamW blr 3e-4 (lr = 3e-4 * 1024 / 256), wd 0.05,
# layer decay 0.65, drop path 0.1, 5 warmup epochs then cosine to 1e-6,
# RandAugment m9-mstd0.5, RandomErasing 0.25, mixup 0.8 / cutmix 1.0,
# label smoothing 0.1, global average pooling (MAE fine-tuning head).
# mmpretrain's MAE fine-tuning recipe is exactly this; we swap in ViTDense,
# our layer-decay constructor and the pretrained checkpoint.
_base_ = ['mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py']
from dbot_mm.utils.config_arch import vit_dense  # noqa: E402
custom_imports = dict(imports=['dbot_mm'], allow_failed_imports=False)

# The one place for the pretrained weights: a dbot_mm pretraining checkpoint
# (encoder under "backbone.") or a published backbone. Override with
# DBOT_PRETRAINED=... or --cfg-options model.backbone.init_cfg.checkpoint=...
pretrained = '{{$DBOT_PRETRAINED:checkpoints/dbot_vitb_1600e.pth}}'

model = dict(
    backbone=vit_dense(
        'vit-base-p16.py', '{{ fileDirname }}', pretrained,
        img_size=224,
        drop_path_rate=0.1,
        out_type='avg_featmap',
        final_norm=False),
    head=dict(in_channels=768))

optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(
        type='AdamW',
        lr=3e-4 * 1024 / 256,
        weight_decay=0.05,
        eps=1e-8,
        betas=(0.9, 0.999)),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(_delete_=True, layer_decay_rate=0.65))

# 8 GPUs x 128 = 1024 images per step (official: 32 x 32)
train_dataloader = dict(batch_size=128)
auto_scale_lr = dict(base_batch_size=1024)
