# dBOT ViT-B/16 distilled from OpenAI CLIP-B/16: the paper's row (official
# README: 85.7 IN-1k top-1, 53.6 COCO APbox, 52.9 ADE20K mIoU).
#
# The official `beit` branch (PRETRAIN.md "ViT-B/16", run.sh defaults,
# run_pretrain.py, modeling_pretrain.py, engine_for_pretraining.py):
#   symmetric student, no decoder: beit_base_patch16_224 with mask tokens in
#     the encoder, shared relative position bias (--rel_pos_bias default),
#     no absolute position embedding (--abs_pos_emb off), layer scale 0.1,
#     drop path 0.1 (--drop_path 0.1), final LayerNorm + linear lm_head to
#     the teacher's width;
#   block masking: --num_mask_patches 78 of 14 x 14, at least 16 per block
#     (--min_mask_patches_per_block 16), BEiT's MaskingGenerator;
#   teacher: CLIP ViT-B/16 (--tokenizer_type clip), all tokens after ln_post
#     (--post_patch_norm True) and its output projection (512 wide), cls
#     dropped (--recon_cls_token False); targets not normalised;
#   loss: --loss_type negcosine, 1 - cos averaged over the masked patches;
#   data: ColorJitter 0.4, flip, RandomResizedCrop 224 with --input_scale
#     0.4 1 (bicubic), ImageNet mean / std for the student, CLIP's for the
#     teacher;
#   optimisation: AdamW lr 3e-3 for batch 4096 (32 GPUs x 128, lr not
#     rescaled), betas (0.9, 0.98), eps 1e-6 (run.sh), weight decay 0.05 except
#     1-D parameters, pos_embed and cls_token (BEiT's no_weight_decay; the
#     mask token and the relative position table are decayed), grad clip 3.0,
#     10 warmup epochs from 0 then cosine to min_lr 1e-5, 1600 epochs as one
#     stage (--stage_epochs 0 1600), fp16 AMP.
#
# Teacher weights (no download at run time); --keep-proj keeps CLIP's output
# projection, which the official teacher applies:
#   python tools/model_converters/clip_to_dbot_teacher.py \
#       ViT-B-16.pt checkpoints/clip-vit-b16_teacher.pth --keep-proj
#   tools/dist_train.sh configs/pretrain/dbot_vitb_clip-b16.py 32
# The student's checkpoint (backbone.*) loads into ViTDense with
# use_rel_pos_bias=True, layer_scale_init_value=0.1 (configs/cls/clip/).
# dbot_vitb_clip-b16_asym.py keeps the asymmetric dBOT student instead.
_base_ = [
    '../_base_/models/vit-base-p16.py',
    '../_base_/datasets/imagenet_dbot_pretrain.py',
    '../_base_/schedules/dbot_pretrain_1600e.py',  # AdamW, fp16, batch 4096
    '../_base_/default_runtime.py',
]
from dbot_mm.engine.schedules import stage_recipe  # noqa: E402

stages = [0, 1600]  # one stage: a fixed teacher is never bootstrapped
warmup_epochs = 10  # run.sh --warmup_epochs
num_mask_patches = 78  # --num_mask_patches
mask_grid = (14, 14)  # 224 / 16
teacher_checkpoint = \
    '{{$DBOT_TEACHER:checkpoints/clip-vit-b16_teacher.pth}}'

# ImageNet (student input) -> CLIP (teacher input) statistics, 0-255 scale
imagenet_norm = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
clip_norm = dict(
    mean=[122.7709383, 116.7460125, 104.09373615],
    std=[68.5005327, 66.6321579, 70.32316305])

model = dict(
    type='DBOTSymmetric',
    # arch / patch size come from vit-base-p16.py
    backbone=dict(
        type='DBOTSymmetricViT',
        img_size=224,
        drop_path_rate=0.1,
        layer_scale_init_value=0.1,
        use_abs_pos_emb=False,
        use_rel_pos_bias=True,
        share_rel_pos_bias=True,
        final_norm=True),
    # lm_head: student width -> teacher width (filled in by DBOTSymmetric)
    neck=dict(type='TokenProjection'),
    head=dict(
        type='MaskedDistillHead',
        loss=dict(type='DistillCosineLoss', eps=1e-6),  # NegCosine
        norm_target=False),
    teacher=dict(
        type='PretrainedTeacher',
        checkpoint=teacher_checkpoint,
        prefix='backbone.',
        arch='b',  # CLIP ViT-B/16 tower: 768 wide, 12 blocks, 12 heads
        img_size=224,
        patch_size=16,
        pre_norm=True,  # ln_pre
        final_norm=True,  # ln_post on every token (--post_patch_norm)
        out_proj_dims=512,  # CLIP's proj (output_dim 512)
        norm_cfg=dict(type='LN', eps=1e-5),
        patch_cfg=dict(bias=False),
        layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU')),
        data_norm=imagenet_norm,
        teacher_norm=clip_norm),
    predict_cls=False)  # --recon_cls_token False

train_pipeline = [
    dict(type='RobustLoadImageFromFile', on_error='skip', max_skipped=100),
    dict(
        type='ColorJitter',
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,
        hue=0.),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.4, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(
        type='BEiTMaskGenerator',
        input_size=mask_grid,
        num_masking_patches=num_mask_patches,
        min_num_patches=16,
        max_num_patches=None),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=128,  # x 32 GPUs = 4096
    dataset=dict(pipeline=train_pipeline))

# the base's AdamW (weight decay 0.05, no decay on biases and 1-D tensors:
# layer scale, q/v biases) under fp16 AMP, with
optim_wrapper = dict(
    optimizer=dict(lr=3e-3, betas=(0.9, 0.98), eps=1e-6),
    clip_grad=dict(max_norm=3.0),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
        }))

# one stage, fixed teacher: no StageBootstrapHook
param_scheduler, custom_hooks = stage_recipe(
    stages, warmup_epochs=warmup_epochs, start_factor=0., eta_min=1e-5)
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=stages[-1])
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=20, max_keep_ckpts=3))  # --save_ckpt_freq 20
