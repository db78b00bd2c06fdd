# The dBOT model (official models_mae.py) without an arch. Two base files
# cannot both define `model`, so this one is named `dbot_model`; a pretrain
# config lists it next to one arch file (vit-*.py, which sets
# model.backbone.arch / patch_size) and writes `model = _base_.dbot_model`,
# which mmengine merges into the arch's `model`. DBOT derives what depends
# on the arch (decoder input width and patch count, teacher arch and sizes)
# from model.backbone unless a config sets it.
dbot_model = dict(
    type='DBOT',
    # student: MAE encoder on the visible 25 % of the patches (img_size
    # 224 by default, or as the arch file sets it)
    backbone=dict(type='DBOTViT', mask_ratio=0.75, drop_path_rate=0.2),
    # decoder: 8 blocks x 512 wide x 16 heads, keeps the cls token, predicts
    # the teacher's width (filled in by DBOT from its teacher)
    neck=dict(
        type='DBOTDecoder',
        decoder_embed_dim=512,
        decoder_depth=8,
        decoder_num_heads=16,
        mlp_ratio=4.,
        drop_path_rate=0.2),  # official: the student's rate (sdpr)
    # per-token normalised targets, smooth L1 (beta 2) on masked + cls tokens
    head=dict(
        type='MaskedDistillHead',
        loss=dict(type='DistillSmoothL1Loss', beta=2.0),
        norm_target=True),
    # frozen ViT on the full image, no final norm; stage 1 starts from the
    # student's initial weights, later stages are bootstrapped by
    # StageBootstrapHook
    teacher=dict(type='ViTTeacher', final_norm=False),
    init_teacher_from_student=True)
