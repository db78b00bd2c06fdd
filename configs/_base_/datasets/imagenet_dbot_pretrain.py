# ImageNet-1k for dBOT pre-training (official main_pretrain.py): random
# resized crop 224 with scale (0.2, 1), bicubic; horizontal flip; ImageNet
# mean / std; 128 images per GPU (x 32 GPUs = 4096).
dataset_type = 'ImageNet'
data_root = 'data/imagenet/'
data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

# A corrupt or truncated file is logged and skipped (at most 100 per worker,
# then the run stops naming the files), never a crash after days of training
# or a silent half-grey image: dbot_mm.datasets.RobustLoadImageFromFile.
train_pipeline = [
    dict(type='RobustLoadImageFromFile', on_error='skip', max_skipped=100),
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.2, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=128,
    num_workers=10,
    # Workers restart every epoch, seeded from the epoch-seeded main RNG
    # (torch's own per-worker seeding, kept by `torch_worker_seed`): new
    # augmentations each epoch, replayed exactly after a resume. Persistent
    # workers would carry their RNG across epochs and break that.
    persistent_workers=False,
    pin_memory=True,
    drop_last=True,
    worker_init_fn=dict(type='torch_worker_seed'),
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        pipeline=train_pipeline))
