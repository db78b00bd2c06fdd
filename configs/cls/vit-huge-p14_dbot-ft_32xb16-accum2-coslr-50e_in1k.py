# dBOT ImageNet-1k fine-tuning, ViT-H/14 at 224 px (official DOWNSTREAM.md
# "ViT-H/14"; README row 87.4 from 87.4_dbot_huge_pre.pth): as ViT-L but
# drop path 0.3 and no gradient clipping; blr 3e-4 (lr = 3e-4 * 1024 / 256),
# layer decay 0.75, 50 epochs with 5 warmup epochs, batch 1024 as the
# official 32 GPUs x 16 images x 2 accumulation steps.
#
# Pretrained weights: a dbot_mm run of configs/pretrain/dbot_vith.py, or the
# official release converted with
#   python tools/model_converters/dbot_official_to_mm.py \
#       87.4_dbot_huge_pre.pth checkpoints/dbot_vith_1600e.pth --backbone-only
#   tools/dist_train.sh \
#       configs/cls/vit-huge-p14_dbot-ft_32xb16-accum2-coslr-50e_in1k.py 32
_base_ = ['./vit-large-p16_dbot-ft_8xb128-coslr-50e_in1k.py']
from dbot_mm.utils.config_arch import vit_dense  # noqa: E402

pretrained = '{{$DBOT_PRETRAINED:checkpoints/dbot_vith_1600e.pth}}'

model = dict(
    backbone=vit_dense('vit-huge-p14.py', '{{ fileDirname }}',
                       pretrained, drop_path_rate=0.3),
    head=dict(in_channels=1280))

# --accum_iter 2, no --clip_grad
optim_wrapper = dict(accumulative_counts=2, clip_grad=None)

train_dataloader = dict(batch_size=16)
# lr is for 1024 images per update (32 x 16 x 2); `--auto-scale-lr` compares
# the per-iteration batch (GPUs x 16) with 512, so the ratio stays right as
# long as 2 steps are accumulated.
auto_scale_lr = dict(base_batch_size=512)
