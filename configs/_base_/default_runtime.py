# Runtime shared by the dbot_mm configs (mmpretrain scope).
default_scope = 'mmpretrain'
custom_imports = dict(imports=['dbot_mm'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)
# EpochSeedHook: a resumed run repeats the uninterrupted one bit for bit.
# NonFiniteLossHook: stop on NaN/Inf before anything is checkpointed.
custom_hooks = [dict(type='EpochSeedHook'), dict(type='NonFiniteLossHook')]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_level = 'INFO'
load_from = None
resume = False
# A fixed seed makes the sampler order (seeded at build time) repeat after a
# resume; diff_rank_seed gives every rank its own masks and augmentations.
randomness = dict(seed=0, diff_rank_seed=True)
