# The ViT-B/16 recipe on the 3x schedule: 36 epochs, steps 27 and 33.
_base_ = ['./cascade-mask-rcnn_dbot-vit-base-p16_fpn_4conv1fc-giou_amp-ms-crop-1x_coco.py']
from dbot_mm.engine.schedules import step_lr_schedulers  # noqa: E402

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
# linear warmup over 500 iterations, LR x 0.1 at epochs 27 and 33
param_scheduler = step_lr_schedulers(max_epochs, milestones=[27, 33])
