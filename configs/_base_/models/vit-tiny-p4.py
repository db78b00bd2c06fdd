# A small ViT for the CPU demo and the tests: 32 px Fashion-MNIST, patch 4
# (8 x 8 patches), 128 wide, 4 blocks, 4 heads.
model = dict(
    backbone=dict(
        arch=dict(
            embed_dims=128,
            num_layers=4,
            num_heads=4,
            feedforward_channels=512),
        img_size=32,
        patch_size=4))
