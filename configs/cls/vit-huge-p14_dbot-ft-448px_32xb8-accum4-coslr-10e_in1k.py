# dBOT ImageNet-1k fine-tuning of ViT-H/14 at 448 px, from the 224 px
# fine-tuned model (official DOWNSTREAM.md "ViT-H/14-448"; README row 88.0):
# 32 x 32 patches (the position embedding is resized on loading), drop path
# 0.4, blr 7e-5 (lr = 7e-5 * 1024 / 256), layer decay 0.9, 10 epochs with 2
# warmup epochs from 0 then cosine to 1e-6, batch 1024 as the official
# 32 GPUs x 8 images x 4 accumulation steps; test resize 448 + centre crop
# 448 (crop_pct 1.0 above 224 px).
#
# Initialisation as the official main_finetune.py: the encoder and its
# global-pool norm come from the 224 px fine-tune; the classifier is drawn
# anew as in the 224 px config (the official code redraws its weight and
# keeps the 224 px bias; here the bias starts at 0).
#
# Weights: the checkpoint of
# vit-huge-p14_dbot-ft_32xb16-accum2-coslr-50e_in1k.py, or the official
# 87.4_dbot_huge_finetune.pth converted with
#   python tools/model_converters/vit_finetuned_to_mmpretrain.py \
#       87.4_dbot_huge_finetune.pth checkpoints/dbot_vith_ft_in1k.pth
#   tools/dist_train.sh \
#       configs/cls/vit-huge-p14_dbot-ft-448px_32xb8-accum4-coslr-10e_in1k.py 32
_base_ = ['./vit-huge-p14_dbot-ft_32xb16-accum2-coslr-50e_in1k.py']
from dbot_mm.datasets.resolution import pipeline_at_size  # noqa: E402
from dbot_mm.engine.schedules import finetune_schedule  # noqa: E402

# the 224 px fine-tune (DBOT_FINETUNED=..., not DBOT_PRETRAINED)
pretrained = '{{$DBOT_FINETUNED:checkpoints/dbot_vith_ft_in1k.pth}}'
img_size = 448
max_epochs = 10
warmup_epochs = 2

model = dict(
    backbone=dict(
        img_size=img_size,
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint=pretrained)))

optim_wrapper = dict(
    optimizer=dict(lr=7e-5 * 1024 / 256),
    paramwise_cfg=dict(layer_decay_rate=0.9),
    accumulative_counts=4)

param_scheduler, train_cfg = finetune_schedule(max_epochs, warmup_epochs)

train_dataloader = dict(
    batch_size=8,
    dataset=dict(pipeline=pipeline_at_size(
        _base_.train_dataloader.dataset.pipeline, img_size)))
val_dataloader = dict(
    dataset=dict(pipeline=pipeline_at_size(
        _base_.val_dataloader.dataset.pipeline, img_size)))
test_dataloader = val_dataloader
# lr is for 1024 images per update (32 x 8 x 4); see the 224 px config
auto_scale_lr = dict(base_batch_size=256)
