# SdAE ViT-B/16 (Chen et al., "SdAE: Self-distillated Masked Autoencoder",
# ECCV 2022) on ImageNet-1k, the published recipe of the official README
# (github.com/AbrahamYabo/SdAE):
#   main_pretrain.py --batch_size 96 --epochs 300 (8 GPUs)
#     --model mae_vit_base_patch16 --model_teacher vit_base_patch16
#     --warmup_epochs 60 --mask_ratio 0.75 --blr 2.666e-4
#     --ema_op per_epoch --ema_frequent 1
#     --momentum_teacher 0.96 --momentum_teacher_final 0.99
#     --drop_path 0.25 --shrink_num 147 --ncrop_loss 3
# and the defaults of main_pretrain.py: AdamW betas (0.9, 0.95), weight
# decay 0.04 on every tensor but biases and norms (timm add_weight_decay;
# --weight_decay_end is never used), min_lr 0, no gradient clipping, fp16
# autocast with a loss scaler. The MAE student (decoder 8 x 512, predicting
# the encoder's 768 channels, no drop path in the decoder) distils an EMA
# teacher that sees 3 folds of 49 hidden patches (EMATeacher documents what
# was read where), loss 1 - cosine against per-token normalised teacher
# features.
#   tools/dist_train.sh configs/pretrain/sdae_vitb.py 8
_base_ = ['./dbot_vitb.py']
from dbot_mm.engine.schedules import stage_lr_schedulers  # noqa: E402

epochs = 300
warmup_epochs = 60
drop_path = 0.25
batch_per_gpu, gpus = 96, 8

model = dict(
    backbone=dict(drop_path_rate=drop_path, mask_ratio=0.75),
    neck=dict(drop_path_rate=0.),  # official decoder blocks: no drop path
    head=dict(
        loss=dict(_delete_=True, type='DistillCosineLoss', dim=1),
        norm_target=True),  # (t - mean) / sqrt(var + 1e-6) per token
    teacher=dict(
        _delete_=True,
        type='EMATeacher',
        final_norm=True,  # models_teacher.forward_teachers: self.norm
        shrink_num=147,  # all 147 hidden patches of 196
        num_folds=3),  # --ncrop_loss: 3 folds of 49, each its own view
    # official teacher: a freshly initialised ViT, not the student's copy
    init_teacher_from_student=False)

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    constructor='FrozenSkipOptimWrapperConstructor',
    dtype='float16',
    loss_scale='dynamic',
    optimizer=dict(
        type='AdamW',
        lr=2.666e-4 * batch_per_gpu * gpus / 256,
        betas=(0.9, 0.95),
        weight_decay=0.04,
        fused=True),
    # timm add_weight_decay: no decay on 1-D tensors (biases, norms) only;
    # cls / mask tokens are decayed as in the official code
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
auto_scale_lr = dict(base_batch_size=batch_per_gpu * gpus)
train_dataloader = dict(batch_size=batch_per_gpu)

param_scheduler = stage_lr_schedulers([0, epochs],
                                      warmup_epochs=warmup_epochs)
train_cfg = dict(max_epochs=epochs)

custom_hooks = [
    # teacher <- m * teacher + (1 - m) * student after every epoch, m the
    # epoch's entry of the cosine 0.96 -> 0.99 (util/cosine_scheduler.py)
    dict(
        type='EMATeacherHook',
        momentum=0.96,
        final_momentum=0.99,
        update='epoch',
        interval=1),
    dict(type='EpochSeedHook'),
    dict(type='NonFiniteLossHook'),
]
# the official loop saves every 20 epochs
default_hooks = dict(checkpoint=dict(interval=20, max_keep_ckpts=3))
