# A small ViT for the CPU demo and the tests: 32 px Fashion-MNIST, patch 4.
model = dict(
    backbone=dict(
        arch=dict(
            embed_dims=192,
            num_layers=6,
            num_heads=3,
            feedforward_channels=768),
        img_size=32,
        patch_size=4))
