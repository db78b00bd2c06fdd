# dBOT pre-training optimisation (official main_pretrain.py, PRETRAIN.md):
# AdamW with betas (0.9, 0.95) and weight decay 0.05 grouped as timm's
# `add_weight_decay` without a skip list: biases and 1-D tensors (norms) are
# exempt, every other trainable tensor is decayed, cls_token and mask_token
# included. The sin-cos position embeddings are frozen (requires_grad=False)
# and stay out of the optimizer. lr = blr 1.5e-4 x 4096 / 256 for the total
# batch of 4096; 1600 epochs; mixed precision with a dynamic loss scale. The
# per-stage LR schedule (param_scheduler) is written next to the stage list
# in each pretrain config.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    # default groups, minus a warning per frozen teacher parameter
    constructor='FrozenSkipOptimWrapperConstructor',
    # 'float16' as the official code; 'bfloat16' on Ampere or newer:
    # `tools/train.py CONFIG --amp bf16`
    # (or --cfg-options optim_wrapper.dtype=bfloat16)
    dtype='float16',
    loss_scale='dynamic',
    optimizer=dict(
        type='AdamW',
        lr=1.5e-4 * 4096 / 256,
        betas=(0.9, 0.95),
        weight_decay=0.05,
        # one fused kernel per step instead of ~10 passes over every tensor
        # (docs/performance.md); needs torch >= 2.4 on CPU, >= 2.0 on CUDA.
        # Older torch: --cfg-options optim_wrapper.optimizer.fused=False
        fused=True),
    paramwise_cfg=dict(bias_decay_mult=0., flat_decay_mult=0.))

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1600)

# lr above is for 32 GPUs x 128; `--auto-scale-lr` rescales it linearly.
auto_scale_lr = dict(base_batch_size=4096)
