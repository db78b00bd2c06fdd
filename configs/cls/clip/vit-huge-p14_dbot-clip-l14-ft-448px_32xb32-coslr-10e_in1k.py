# 448 px ImageNet-1k fine-tuning of the 224 px fine-tuned dBOT ViT-H/14
# (CLIP-L/14 teacher): official README row 89.1.
#
# Official `beit` branch, DOWNSTREAM.md "ViT-H/14-448": starts from the
# 224 px fine-tuned model (vit-huge-p14_dbot-clip-l14-ft_32xb32-coslr-50e_
# in1k.py, head included), huge_patch14_448 (32 x 32 patches: position and
# relative position tables are resized on loading), 10 epochs, 1 warmup
# epoch, lr 5e-5, layer decay 0.95, drop path 0.4, --input_size 448; test
# resize 448 + center crop 448 (crop_pct 1.0 at >= 384 px); batch 1024.
#
# Weights: the checkpoint of the 224 px fine-tune, or the official
# 88.5_clip_huge_finetune.pth converted with
#   python tools/model_converters/vit_finetuned_to_mmpretrain.py \
#       88.5_clip_huge_finetune.pth checkpoints/dbot_vith_clip-l14_ft_in1k.pth
_base_ = ['./vit-huge-p14_dbot-clip-l14-ft_32xb32-coslr-50e_in1k.py']
from dbot_mm.datasets.resolution import pipeline_at_size  # noqa: E402
from dbot_mm.engine.schedules import finetune_schedule  # noqa: E402

finetuned = \
    '{{$DBOT_FINETUNED:checkpoints/dbot_vith_clip-l14_ft_in1k.pth}}'
img_size = 448
max_epochs = 10
warmup_epochs = 1

model = dict(
    backbone=dict(
        img_size=img_size,
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint=finetuned, prefix='backbone.')),
    head=dict(
        init_cfg=dict(
            _delete_=True,
            type='Pretrained',
            checkpoint=finetuned,
            prefix='head.')))

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.95))

param_scheduler, train_cfg = finetune_schedule(max_epochs, warmup_epochs)

train_dataloader = dict(
    dataset=dict(pipeline=pipeline_at_size(
        _base_.train_dataloader.dataset.pipeline, img_size)))
val_dataloader = dict(
    dataset=dict(pipeline=pipeline_at_size(
        _base_.val_dataloader.dataset.pipeline, img_size)))
test_dataloader = val_dataloader
