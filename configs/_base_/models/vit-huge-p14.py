# ViT-H/14 (1280 wide, 32 deep, 16 heads); see vit-base-p16.py.
model = dict(backbone=dict(arch='h', patch_size=14))
