# ViT-B/16: the one definition of the arch, inherited by pretrain, cls, det
# and seg configs (each of them has a `model.backbone`). Widths follow
# mmpretrain's VisionTransformer arch zoo ('b': 768 wide, 12 deep, 12 heads).
model = dict(backbone=dict(arch='b', patch_size=16))
