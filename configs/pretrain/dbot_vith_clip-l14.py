# dBOT ViT-H/14 distilled from OpenAI CLIP-L/14: the paper's row (official
# README: 88.5 IN-1k top-1; 89.1 after the 448 px fine-tune).
#
# Official `beit` branch, PRETRAIN.md "ViT-H/14": the ViT-B recipe of
# dbot_vitb_clip-b16.py (symmetric student, negative cosine, lr 3e-3 for
# batch 4096, betas (0.9, 0.98), 10 warmup epochs, 1600 epochs in one stage,
# drop path 0.1, layer scale 0.1) with
#   student beit_huge_patch14_224 (1280 wide, 32 blocks, 16 heads, patch
#     14: a 16 x 16 grid at 224 px);
#   --num_mask_patches 78 of the 256 patches (the script keeps the B/L
#     number; the block mask generator runs on the 16 x 16 grid);
#   teacher CLIP ViT-L/14 (--tokenizer_model large) at its native 224 px
#     (--second_input_size default 224): the same 16 x 16 grid; output
#     projection to 768.
#
# Teacher weights (no download at run time): the same converted file as
# dbot_vitl_clip-l14.py works (its 16 x 16 table is resized on loading to
# 196 px there, kept here), or convert at the native size:
#   python tools/model_converters/clip_to_dbot_teacher.py \
#       ViT-L-14.pt checkpoints/clip-vit-l14_teacher.pth --keep-proj
#   tools/dist_train.sh configs/pretrain/dbot_vith_clip-l14.py 32
_base_ = './dbot_vitb_clip-b16.py'
from dbot_mm.utils.config_arch import vit_arch  # noqa: E402

teacher_checkpoint = \
    '{{$DBOT_TEACHER:checkpoints/clip-vit-l14_teacher.pth}}'
mask_grid = (16, 16)  # 224 / 14

model = dict(
    backbone=vit_arch('vit-huge-p14.py', '{{ fileDirname }}'),
    teacher=dict(
        checkpoint=teacher_checkpoint,
        arch='l',  # CLIP ViT-L/14 tower: 1024 wide, 24 blocks, 16 heads
        img_size=224,
        patch_size=14,
        out_proj_dims=768))  # CLIP's proj (output_dim 768)

train_pipeline = [
    dict(t, input_size=mask_grid) if t['type'] == 'BEiTMaskGenerator' else t
    for t in _base_.train_pipeline
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
