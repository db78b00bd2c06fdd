# dBOT ViT-L/16 distilled from OpenAI CLIP-L/14: the paper's row (official
# README: 87.8 IN-1k top-1, 56.8 COCO APbox, 56.2 ADE20K mIoU).
#
# Official `beit` branch, PRETRAIN.md "ViT-L/16": the ViT-B recipe of
# dbot_vitb_clip-b16.py (symmetric student, 78 block-masked patches,
# negative cosine, lr 3e-3 for batch 4096, betas (0.9, 0.98), 10 warmup
# epochs, 1600 epochs in one stage, drop path 0.1, layer scale 0.1) with
#   student beit_large_patch16_224 (1024 wide, 24 blocks, 16 heads);
#   teacher CLIP ViT-L/14 (--tokenizer_model large) fed 196 px
#     (--second_input_size 196): 14 x 14 patches of 14 px, the student's
#     14 x 14 grid of 16 px patches at 224 px; its 16 x 16 position table
#     (224 / 14) is resized on loading; output projection to 768.
#
# Teacher weights (no download at run time):
#   python tools/model_converters/clip_to_dbot_teacher.py \
#       ViT-L-14.pt checkpoints/clip-vit-l14_teacher.pth --img-size 196 \
#       --keep-proj
#   tools/dist_train.sh configs/pretrain/dbot_vitl_clip-l14.py 32
_base_ = './dbot_vitb_clip-b16.py'
from dbot_mm.utils.config_arch import vit_arch  # noqa: E402

teacher_checkpoint = \
    '{{$DBOT_TEACHER:checkpoints/clip-vit-l14_teacher.pth}}'

model = dict(
    backbone=vit_arch('vit-large-p16.py', '{{ fileDirname }}'),
    teacher=dict(
        checkpoint=teacher_checkpoint,
        arch='l',  # CLIP ViT-L/14 tower: 1024 wide, 24 blocks, 16 heads
        img_size=196,  # --second_input_size 196
        patch_size=14,
        out_proj_dims=768))  # CLIP's proj (output_dim 768)
