"""Tiny image folders, tiny dBOT configs and subprocess runs of
tools/train.py / tools/dist_train.sh for the reliability tests."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))
IMG = 16  # 4 x 4 patches of 4 px
CLASSES = ('a', 'b')


def make_image_folder(root, n=12, size=IMG, seed=0, split='train'):
    """``root/<split>/<class>/<i>.png`` + ``root/meta/<split>.txt``, the
    layout of docs/datasets.md (Fashion-MNIST folders)."""
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    lines = []
    for i in range(n):
        cls = CLASSES[i % len(CLASSES)]
        os.makedirs(osp.join(root, split, cls), exist_ok=True)
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(img).save(osp.join(root, split, cls, f'{i}.png'))
        lines.append(f'{cls}/{i}.png {i % len(CLASSES)}')
    with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return str(root)


CONFIG = '''\
_base_ = ['{root}/configs/_base_/default_runtime.py']
from dbot_mm.engine.schedules import stage_lr_schedulers  # noqa: E402

custom_imports = dict(imports=['dbot_mm', 'reliability_plugins'],
                      allow_failed_imports=False)
stages = {stages}
ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
model = dict(
    type='{model_type}',
    backbone=dict(type='DBOTViT', arch=ARCH, img_size={img}, patch_size=4,
                  mask_ratio=0.75),
    neck=dict(type='DBOTDecoder', decoder_embed_dim=32, decoder_depth=1,
              decoder_num_heads=2),
    head=dict(type='MaskedDistillHead',
              loss=dict(type='DistillSmoothL1Loss', beta=2.0),
              norm_target=True),
    teacher=dict(type='ViTTeacher', final_norm=False, depth=2),
    init_teacher_from_student=True,
    data_preprocessor=dict(type='SelfSupDataPreprocessor',
                           mean=[127.5] * 3, std=[64.] * 3, to_rgb=True))
train_pipeline = {pipeline}
train_dataloader = dict(
    batch_size={batch_size},
    num_workers={num_workers},
    persistent_workers=False,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CustomDataset', data_root='{data_root}',
                 ann_file='meta/train.txt', data_prefix='train',
                 pipeline=train_pipeline))
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='FrozenSkipOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95),
                   weight_decay=0.05),
    clip_grad=dict(max_norm=3.0))
param_scheduler = stage_lr_schedulers(stages, warmup_epochs={warmup})
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=stages[-1])
custom_hooks = [
    dict(type='StageBootstrapHook', stages=stages,
         teacher_depths=[2] * (len(stages) - 1)),
    dict(type='EpochSeedHook'),
    dict(type='NonFiniteLossHook'),
    dict(type='FaultInjectionHook'),
    dict(type='RecordHook'),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=-1))
randomness = dict(seed=0, diff_rank_seed=True)
'''

AUGMENT = '''[
    dict(type='RobustLoadImageFromFile', on_error='raise'),
    dict(type='RandomResizedCrop', scale={img}, crop_ratio_range=(0.5, 1.0),
         backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]'''
PLAIN = '''[
    dict(type='RobustLoadImageFromFile', on_error='raise'),
    dict(type='PackInputs'),
]'''


def write_config(path, data_root, stages=(0, 2, 4, 6), warmup=1,
                 batch_size=4, augment=True, model_type='DBOT',
                 num_workers=0, extra=''):
    text = CONFIG.format(
        root=ROOT, stages=list(stages), model_type=model_type, img=IMG,
        pipeline=(AUGMENT.format(img=IMG) if augment else PLAIN),
        batch_size=batch_size, num_workers=num_workers, data_root=data_root,
        warmup=warmup) + extra
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


def _env(extra=None):
    env = dict(os.environ)
    env.update(
        CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
        PYTHONPATH=os.pathsep.join(
            [ROOT, HERE] + [p for p in [env.get('PYTHONPATH')] if p]),
        PYTHON=sys.executable)
    for key in list(env):
        if key.startswith('DBOT_MM_TEST_'):
            del env[key]
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


def start_train(cfg, work_dir, *args, env=None, log=None):
    """Start ``tools/train.py`` in a subprocess; returns the Popen, whose
    output goes to ``log`` (default ``<work_dir>.log``)."""
    log = log or f'{work_dir}.log'
    out = open(log, 'w')
    proc = subprocess.Popen(
        [sys.executable, osp.join(ROOT, 'tools', 'train.py'), str(cfg),
         '--work-dir', str(work_dir), *args],
        cwd=ROOT, env=_env(env), stdout=out, stderr=subprocess.STDOUT)
    proc.log_path = log
    out.close()
    return proc


def wait(proc, timeout=300):
    rc = proc.wait(timeout=timeout)
    with open(proc.log_path) as f:
        return rc, f.read()


def run_train(cfg, work_dir, *args, env=None, timeout=300):
    return wait(start_train(cfg, work_dir, *args, env=env), timeout)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_dist_train(cfg, work_dir, nproc, *args, timeout=400):
    result = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), str(cfg),
         str(nproc), '--work-dir', str(work_dir), *args],
        cwd=ROOT, env=_env(dict(PORT=free_port())), capture_output=True,
        text=True, timeout=timeout)
    return result.returncode, result.stdout + result.stderr


def load_ckpt(path):
    return torch.load(path, map_location='cpu', weights_only=False)


def read_losses(work_dir, rank=0):
    with open(osp.join(work_dir, f'losses_rank{rank}.jsonl')) as f:
        return [json.loads(line) for line in f if line.strip()]


def assert_same_tree(a, b, where=''):
    """Bit-identical nested dicts / lists of tensors and numbers."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and \
            torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_tree(a[k], b[k], f'{where}.{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f'{where}[{i}]')
    else:
        assert a == b, (where, a, b)
