"""FSDP (FlexibleRunner + DBOTFSDPStrategy) trains like DDP and resumes bit
for bit, on CPU.

Two gloo processes train the demo-size model with the strategy block of
``configs/pretrain/dbot_vith_fsdp.py`` (FSDP units for student encoder and
decoder, teacher ignored, full state dict) and bf16 autocast with fused AdamW,
across a stage boundary; its logged losses must equal a DDP run's. Runs resumed
from the checkpoint written at the boundary epoch (the bootstrap then happens
after the resume) and from one inside the second stage must end with the same
student, decoder, teacher, AdamW state and LR-scheduler state as the
uninterrupted run, to the bit.
"""
import os
import os.path as osp
import re
import socket
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(ROOT, 'configs/pretrain/dbot_demo_fashion-mnist.py')
FSDP_CFG = osp.join(ROOT, 'configs/pretrain/dbot_vith_fsdp.py')
FASHION_MNIST_SRC = '/usr/share/datasets/fashion-mnist'


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def train(cfg_file, work_dir, *extra, log_file):
    cmd = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
        '2', '--master_addr', '127.0.0.1', '--master_port',
        str(free_port()),
        osp.join(ROOT, 'tools/train.py'),
        str(cfg_file), '--launcher', 'pytorch', '--work-dir',
        str(work_dir), *extra
    ]
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    result = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    log_file.write_text(log)
    assert result.returncode == 0, log[-3000:]
    return log


def losses(log):
    return dict(
        re.findall(r'Epoch\(train\)\s+(\[\d+\]\[\d+/\d+\]).*?loss: ([\d.]+)',
                   log))


def load(path):
    return torch.load(path, map_location='cpu', weights_only=False)


def assert_equal_tree(a, b, where):
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_equal_tree(a[k], b[k], f'{where}.{k}')
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal_tree(x, y, f'{where}[{i}]')
    elif torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype, where
        assert torch.equal(a, b), (
            f'{where} differs by up to '
            f'{(a.double() - b.double()).abs().max().item():.3g}')
    else:
        assert a == b, f'{where}: {a!r} != {b!r}'


@pytest.mark.slow
@pytest.mark.skipif(
    not torch.distributed.is_available(), reason='torch without distributed')
@pytest.mark.skipif(
    not osp.isdir(FASHION_MNIST_SRC), reason='dataset-fashion-mnist missing')
def test_fsdp_resume_is_bit_identical(tmp_path):
    from dbot_mm.datasets import convert_fashion_mnist
    data = tmp_path / 'fm'
    convert_fashion_mnist(
        str(data), src=FASHION_MNIST_SRC, num_train=64, num_val=8,
        pad_to=32)
    strategy = Config.fromfile(FSDP_CFG).strategy.to_dict()
    common = f"""_base_ = '{DEMO}'
from dbot_mm.engine.schedules import stage_lr_schedulers

stages = [0, 1, 3]
optim_wrapper = dict(type='AutocastOptimWrapper', dtype='bfloat16',
                     clip_grad=None)
train_dataloader = dict(batch_size=16, dataset=dict(data_root='{data}'))
param_scheduler = stage_lr_schedulers(stages, warmup_epochs=0)
train_cfg = dict(max_epochs=3)
custom_hooks = [
    dict(type='StageBootstrapHook', stages=stages, teacher_depths=[4, 2]),
    dict(type='EpochSeedHook'),
    dict(type='NonFiniteLossHook'),
]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=-1))
"""
    ddp_file = tmp_path / 'tiny_ddp.py'
    ddp_file.write_text(common)
    cfg_file = tmp_path / 'tiny_fsdp.py'
    cfg_file.write_text(common + f"""runner_type = 'FlexibleRunner'
strategy = {strategy!r}
""")
    full = tmp_path / 'full'
    log = train(cfg_file, full, log_file=tmp_path / 'full.log')
    assert "type='DBOTFSDPStrategy'" in log
    assert 'dBOT stage 2/2 begins at epoch 1' in log
    # 64 images / (2 ranks x 16) = 2 iterations per epoch
    ref_losses = losses(log)
    assert len(ref_losses) == 6, ref_losses
    ref = load(full / 'epoch_3.pth')

    # The checkpoint holds the real AdamW moments (torch's FSDP optimizer
    # state dict on a CPU device used to save exp_avg_sq as exp_avg too).
    state = ref['optimizer']['state']
    # keyed by parameter name: written by FSDP.optim_state_dict (a plain or
    # DDP optimizer state dict is keyed by index)
    assert state and all(isinstance(k, str) for k in state)
    assert all(
        not torch.equal(s['exp_avg'], s['exp_avg_sq'])
        for s in state.values())
    model = ref['state_dict']
    assert int(model['stage']) == 1
    assert any(k.startswith('teacher.') for k in model)
    assert any(k.startswith('backbone.') for k in model)
    assert any(k.startswith('neck.') for k in model)


    for epoch in (1, 2):  # at the stage boundary, inside stage 2
        work = tmp_path / f'resume{epoch}'
        log = train(
            cfg_file, work, '--resume', str(full / f'epoch_{epoch}.pth'),
            log_file=tmp_path / f'resume{epoch}.log')
        assert f'resumed epoch: {epoch}' in log
        assert ('dBOT stage 2/2 begins' in log) == (epoch == 1)
        got = losses(log)
        assert got and all(ref_losses[k] == v for k, v in got.items()), got
        ckpt = load(work / 'epoch_3.pth')
        for key in ('state_dict', 'optimizer', 'param_schedulers'):
            assert_equal_tree(ref[key], ckpt[key], f'resume@{epoch}:{key}')

    # FSDP trains like DDP (same data, masks, reductions, weight-decay groups
    # and AdamW updates). Checked last so that a difference here never hides
    # the resume checks.
    log = train(ddp_file, tmp_path / 'ddp', log_file=tmp_path / 'ddp.log')
    assert losses(log) == ref_losses
