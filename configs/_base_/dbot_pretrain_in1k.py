# The dBOT pre-training recipe shared by dbot_vitb.py, dbot_vitl.py and
# dbot_vith.py (official PRETRAIN.md): ImageNet-1k, 32 GPUs x 128 images,
# 1600 epochs as two stages of 800, a linear warmup of 40 epochs at the start
# of every stage, drop path 0.2 in the student encoder and decoder. Listed
# next to one arch file (vit-*.py), as dbot.py is; each config writes
# `model = _base_.dbot_model`, its teacher depths and the stage recipe.
_base_ = [
    './models/dbot.py',
    './datasets/imagenet_dbot_pretrain.py',
    './schedules/dbot_pretrain_1600e.py',
    './default_runtime.py',
]

stages = [0, 800, 1600]  # stage boundaries in epochs (--stage_epochs)
warmup_epochs = 40  # linear warmup at the start of every stage
drop_path = 0.2  # student encoder and decoder (--sdpr)

dbot_model = dict(
    backbone=dict(drop_path_rate=drop_path),
    neck=dict(drop_path_rate=drop_path))
train_cfg = dict(max_epochs=stages[-1])
# Checkpoint every 10 epochs as the official code; the epochs before each
# boundary (800) are among them.
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=10, max_keep_ckpts=3))
