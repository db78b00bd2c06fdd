# ViT-L/16 (1024 wide, 24 deep, 16 heads); see vit-base-p16.py.
model = dict(backbone=dict(arch='l', patch_size=16))
