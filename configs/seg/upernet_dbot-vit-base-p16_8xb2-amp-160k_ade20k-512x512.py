# dBOT ADE20K semantic segmentation, ViT-B/16 (official mae_segmentation
# config + DOWNSTREAM.md): UperNet (channels 768) + auxiliary FCN head on
# ViT blocks (3, 5, 7, 11) -> strides 4/8/16/32 (the same deconv / max-pool
# adapter as detection); pretrained absolute position embedding plus a
# relative position bias per block trained from zero, layer scale 1.0,
# drop path 0.2 (DOWNSTREAM.md overrides the config's 0.1); AdamW lr 1e-4,
# wd 0.05, layer decay 0.65; 1500 linear warmup iters then poly; 160k iters;
# 8 GPUs x 2 crops of 512; AMP; slide inference (crop 512, stride 341).
# mmseg's MAE UperNet config is this recipe; we inherit it and replace the
# backbone (its Feature2Pyramid neck lives in ViTDense) and the optimizer.
_base_ = ['mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py']
from dbot_mm.engine.optimizers import layer_decay_adamw  # noqa: E402
from dbot_mm.utils.config_arch import vit_dense  # noqa: E402
custom_imports = dict(imports=['dbot_mm'], allow_failed_imports=False)

# The one place for the pretrained weights: a dbot_mm pretraining checkpoint
# (encoder under "backbone.") or a published backbone. Override with
# DBOT_PRETRAINED=... or --cfg-options model.backbone.init_cfg.checkpoint=...
pretrained = '{{$DBOT_PRETRAINED:checkpoints/dbot_vitb_1600e.pth}}'

model = dict(
    pretrained=None,
    backbone=vit_dense(
        'vit-base-p16.py', '{{ fileDirname }}', pretrained,
        _delete_=True,
        img_size=512,
        out_indices=(3, 5, 7, 11),
        out_scales=(4, 2, 1, 0.5),
        adapter_norm_cfg=dict(type='SyncBN', requires_grad=True),
        use_rel_pos_bias=True,
        layer_scale_init_value=1.0,
        drop_path_rate=0.2),
    neck=None,
    decode_head=dict(in_channels=[768, 768, 768, 768], channels=768),
    auxiliary_head=dict(in_channels=768),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))

optim_wrapper = layer_decay_adamw(0.65)
fp16 = None  # mmseg 0.x key in the base; AMP is the optim wrapper above

param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=1500),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        begin=1500,
        end=160000,
        by_epoch=False)
]
train_cfg = dict(max_iters=160000)

# 8 GPUs x 2 images
train_dataloader = dict(batch_size=2)
