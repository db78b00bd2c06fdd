"""The per-stage LR that mmengine produces equals the official lr_sched.py."""
import math

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import DataLoader

import dbot_mm  # noqa: F401
from dbot_mm.engine.schedules import (stage_lr_schedulers, stage_recipe,
                                      step_lr_schedulers)


def official_lr(base, epoch, stages, warmup, min_lr=0.):
    """dBOT util/lr_sched.py, written from its definition: ``epoch`` is the
    fractional epoch (iteration / iterations per epoch)."""
    start = max(s for s in stages[:-1] if s <= epoch)
    length = stages[stages.index(start) + 1] - start
    e = epoch - start
    if e < warmup:
        return base * e / warmup
    return min_lr + (base - min_lr) * 0.5 * (
        1 + math.cos(math.pi * (e - warmup) / (length - warmup)))


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, mode='loss'):
        return dict(loss=self.linear(inputs).pow(2).mean())


class RecordLR(Hook):

    def __init__(self):
        self.lrs = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.lrs.append(
            [g['lr'] for g in runner.optim_wrapper.optimizer.param_groups])


def run_schedule(tmp_path, stages, warmup, iters_per_epoch, base_lr):
    recorder = RecordLR()
    data = [dict(inputs=torch.randn(2)) for _ in range(iters_per_epoch)]
    runner = Runner(
        model=ToyModel(),
        work_dir=str(tmp_path),
        train_dataloader=DataLoader(data, batch_size=1),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=base_lr),
            # a second param group with its own base LR must follow too
            paramwise_cfg=dict(custom_keys={'bias': dict(lr_mult=0.5)})),
        param_scheduler=stage_lr_schedulers(stages, warmup_epochs=warmup),
        train_cfg=dict(by_epoch=True, max_epochs=stages[-1]),
        default_hooks=dict(checkpoint=None, logger=None),
        custom_hooks=[recorder],
        default_scope='mmpretrain',
        log_level='WARNING')
    runner.train()
    return recorder.lrs


@pytest.mark.parametrize('stages,warmup,iters', [([0, 3, 6], 1, 4),
                                                 ([0, 4, 7, 10], 2, 3)])
def test_lr_matches_official_formula(tmp_path, stages, warmup, iters):
    base = 0.6
    lrs = run_schedule(tmp_path, stages, warmup, iters, base)
    assert len(lrs) == stages[-1] * iters
    for it, group_lrs in enumerate(lrs):
        expected = official_lr(base, it / iters, stages, warmup)
        assert group_lrs[0] == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert group_lrs[1] == pytest.approx(0.5 * expected, abs=1e-12)
    # restarts: every stage begins at 0 and peaks at the base LR
    for begin in stages[:-1]:
        assert lrs[begin * iters][0] == 0
        assert lrs[(begin + warmup) * iters][0] == pytest.approx(base)


def test_helper_dicts():
    scheds = stage_lr_schedulers([0, 800, 1600], warmup_epochs=40)
    assert [(s['type'], s['begin'], s['end']) for s in scheds] == [
        ('StageLinearLR', 0, 40), ('StageCosineAnnealingLR', 40, 800),
        ('StageLinearLR', 800, 840), ('StageCosineAnnealingLR', 840, 1600)
    ]
    assert all(s['convert_to_iter_based'] and s['by_epoch'] for s in scheds)
    assert scheds[0]['start_factor'] == 0 and scheds[1]['eta_min'] == 0


@pytest.mark.parametrize('stages,warmup,msg', [
    ([0, 800, 800], 40, 'strictly increasing'),
    ([10, 800], 40, 'start at epoch 0'),
    ([0], 40, 'stage boundaries'),
    ([0, 30, 60], 40, 'shorter than every stage'),
])
def test_helper_rejects_bad_stages(stages, warmup, msg):
    with pytest.raises(ValueError, match=msg):
        stage_lr_schedulers(stages, warmup_epochs=warmup)


def test_stage_recipe():
    knn = dict(type='KNNMonitorHook')
    scheds, hooks = stage_recipe([0, 800, 1600], [0, 24],
                                 warmup_epochs=40,
                                 extra_hooks=[knn],
                                 reset_optimizer=False)
    assert scheds == stage_lr_schedulers([0, 800, 1600], warmup_epochs=40)
    # bootstrap first; hooks of equal priority run in list order
    assert hooks == [
        dict(type='StageBootstrapHook', stages=[0, 800, 1600],
             teacher_depths=[0, 24], reset_optimizer=False),
        dict(type='EpochSeedHook'),
        dict(type='NonFiniteLossHook'), knn
    ]
    # one stage: nothing to bootstrap
    scheds, hooks = stage_recipe([0, 100], warmup_epochs=10, eta_min=1e-5)
    assert scheds == stage_lr_schedulers([0, 100], warmup_epochs=10,
                                         eta_min=1e-5)
    assert [h['type'] for h in hooks] == ['EpochSeedHook',
                                          'NonFiniteLossHook']
    with pytest.raises(ValueError, match='teacher_depths'):
        stage_recipe([0, 800, 1600])
    with pytest.raises(ValueError, match='no boundary'):
        stage_recipe([0, 100], [12], warmup_epochs=10)


def test_step_lr_schedulers():
    warmup, steps = step_lr_schedulers(12, [8, 11])
    assert (warmup['type'], warmup['by_epoch'], warmup['end'],
            warmup['start_factor']) == ('LinearLR', False, 500, 0.001)
    assert (steps['type'], steps['end'], steps['milestones'],
            steps['gamma']) == ('MultiStepLR', 12, [8, 11], 0.1)
