"""EpochSeedHook (bit-identical resume) and NonFiniteLossHook (stop before a
broken state is written) on a toy model in a real Runner."""
import copy
import os.path as osp
import random

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import dbot_mm  # noqa: F401
from dbot_mm.engine.hooks.epoch_seed_hook import EpochSeedHook, epoch_seed
from dbot_mm.engine.hooks.non_finite_loss_hook import NonFiniteLossError


class NoisyToy(BaseModel):
    """Loss with random 'masking' noise from the global RNG, like DBOT."""

    def __init__(self, nan_at_call=None):
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)
        self.calls = 0
        self.nan_at_call = nan_at_call

    def forward(self, inputs, mode='loss'):
        self.calls += 1
        noise = torch.rand_like(inputs)
        out = self.linear(inputs * noise).pow(2).mean()
        if self.calls == self.nan_at_call:
            out = out * float('nan')
        return dict(loss=out, aux=torch.ones(()))


class AugmentedData(Dataset):
    """A random 'augmentation' per sample from numpy and Python's random."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        jitter = np.random.rand(4) + random.random()
        return dict(inputs=torch.full((4, ), float(i)) + torch.tensor(
            jitter, dtype=torch.float32))


def make_runner(work_dir, model=None, max_epochs=3, resume_from=None,
                hooks=()):
    return Runner(
        model=model or NoisyToy(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=AugmentedData(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(
            logger=None, checkpoint=dict(type='CheckpointHook', interval=1)),
        custom_hooks=[
            dict(type='EpochSeedHook'),
            dict(type='NonFiniteLossHook'), *hooks
        ],
        randomness=dict(seed=3),
        resume=resume_from is not None,
        load_from=resume_from,
        default_scope='mmpretrain',
        log_level='WARNING')


def final_state(runner):
    runner.train()
    return copy.deepcopy(runner.model.state_dict())


def test_epoch_seed_is_a_function_of_seed_and_epoch():
    hook, runner = EpochSeedHook(), type('R', (), {})()
    draws = []
    for seed, epoch in [(0, 1), (0, 1), (0, 2), (1, 1)]:
        runner.seed, runner.epoch = seed, epoch
        hook.before_train_epoch(runner)
        draws.append((torch.rand(1).item(), np.random.rand(), random.random()))
    assert draws[0] == draws[1]
    assert len(set(draws)) == 3
    assert epoch_seed(0, 1) != epoch_seed(1, 0)


def test_resume_replays_the_uninterrupted_run(tmp_path):
    full = final_state(make_runner(tmp_path / 'full'))
    resumed = final_state(
        make_runner(
            tmp_path / 'resumed',
            resume_from=str(tmp_path / 'full' / 'epoch_1.pth')))
    for k in full:
        assert torch.equal(full[k], resumed[k]), k


class PoisonWeights(Hook):
    """NaN weights after a step whose loss was finite (overflowing grads)."""
    priority = 'LOW'

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter == 3:
            with torch.no_grad():
                runner.model.linear.weight.fill_(float('nan'))


def _assert_last_good_checkpoint(work_dir, epoch):
    assert osp.exists(work_dir / f'epoch_{epoch}.pth')
    assert not osp.exists(work_dir / f'epoch_{epoch + 1}.pth')
    with open(work_dir / 'last_checkpoint') as f:
        assert f.read().strip().endswith(f'epoch_{epoch}.pth')
    ckpt = torch.load(work_dir / f'epoch_{epoch}.pth', weights_only=False)
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values())


def test_non_finite_loss_stops_before_checkpoint(tmp_path):
    # 2 iterations per epoch; the 4th forward (last of epoch 2) is NaN
    runner = make_runner(tmp_path, model=NoisyToy(nan_at_call=4))
    with pytest.raises(NonFiniteLossError) as err:
        runner.train()
    msg = str(err.value)
    assert 'epoch 2, iteration 4' in msg
    assert 'loss=nan' in msg and 'aux=1' in msg
    assert 'epoch_1.pth' in msg
    _assert_last_good_checkpoint(tmp_path, 1)


def test_non_finite_weights_are_never_saved(tmp_path):
    runner = make_runner(tmp_path, hooks=[PoisonWeights()])
    with pytest.raises(NonFiniteLossError, match='linear.weight') as err:
        runner.train()
    # counted like the loss message (epoch 2, iteration 4) and the file
    # that was not written (epoch_2.pth)
    assert 'at the end of epoch 2 (iteration 4)' in str(err.value)
    _assert_last_good_checkpoint(tmp_path, 1)


class WorkerDraws(Dataset):

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return torch.tensor([np.random.rand(), random.random(),
                             torch.rand(()).item()])


def test_torch_worker_seed_follows_the_epoch_seed():
    """Workers are seeded from the main RNG (reseeded per epoch), not from
    mmengine's per-run constants: same epoch seed -> same draws."""
    loader = Runner.build_dataloader(
        dict(
            dataset=WorkerDraws(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            num_workers=1,
            persistent_workers=False,
            collate_fn=dict(type='default_collate'),
            worker_init_fn=dict(type='torch_worker_seed')),
        seed=0)

    def draws(seed):
        torch.manual_seed(seed)
        return next(iter(loader))

    assert torch.equal(draws(1), draws(1))
    assert not torch.equal(draws(1), draws(2))
