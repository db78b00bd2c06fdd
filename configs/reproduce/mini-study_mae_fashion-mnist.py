# Mini study: the pixel-target baseline, mmpretrain's MAE (normalised-pixel
# L2 loss on masked patches) with the same encoder, decoder size, data,
# optimizer and schedule as the dBOT runs of
# mini-study_dbot_fashion-mnist.py; one stage, no teacher.
_base_ = ['./mini-study_dbot_fashion-mnist.py']
from dbot_mm.engine.schedules import stage_recipe  # noqa: E402

_arch = _base_.arch
_patch = _base_.patch_size
model = dict(
    _delete_=True,
    type='MAE',
    backbone=dict(
        type='MAEViT',
        arch=_arch,
        img_size=_base_.img_size,
        patch_size=_patch,
        mask_ratio=0.75),
    neck=dict(
        type='MAEPretrainDecoder',
        num_patches=(_base_.img_size // _patch)**2,
        patch_size=_patch,
        in_chans=3,
        embed_dim=_arch['embed_dims'],
        decoder_embed_dim=_base_.model.neck.decoder_embed_dim,
        decoder_depth=_base_.model.neck.decoder_depth,
        decoder_num_heads=_base_.model.neck.decoder_num_heads,
        mlp_ratio=4.),
    head=dict(
        type='MAEPretrainHead',
        norm_pix=True,
        patch_size=_patch,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    # the official MAE init, as DBOT's default
    init_cfg=[
        dict(type='Xavier', layer='Linear', distribution='uniform'),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
    ])

# one stage over all the epochs of the dBOT runs
param_scheduler, custom_hooks = stage_recipe(
    [0, _base_.stages[-1]],
    warmup_epochs=_base_.warmup_epochs,
    extra_hooks=_base_.custom_hooks[-1:])  # the kNN monitor
