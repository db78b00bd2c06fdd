"""EMATeacherHook: SdAE's momentum schedule, the exact update in a real
Runner (per epoch and per iteration), and the teacher across a resume."""
import copy
import math

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from torch.utils.data import Dataset

import dbot_mm  # noqa: F401
from dbot_mm.engine.hooks import EMATeacherHook
from dbot_mm.engine.hooks.ema_teacher_hook import ema_momentum
from dbot_mm.utils.safe_load import safe_load

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


def official_schedule(base, final, epochs, warmup=0, start=0.):
    """util/cosine_scheduler.py of SdAE with niter_per_ep=1, in plain
    Python: linspace warmup, then a half cosine over the rest."""
    out = []
    for i in range(warmup):
        out.append(start + (base - start) * i / (warmup - 1)
                   if warmup > 1 else start)
    n = epochs - warmup
    out += [final + 0.5 * (base - final) * (1 + math.cos(math.pi * i / n))
            for i in range(n)]
    return out


def test_momentum_schedule_matches_official():
    sched = official_schedule(0.96, 0.99, 300)
    assert [ema_momentum(e, 300, 0.96, 0.99) for e in range(300)] == \
        pytest.approx(sched, abs=1e-15)
    assert ema_momentum(0, 300, 0.96, 0.99) == 0.96
    assert ema_momentum(150, 300, 0.96, 0.99) == pytest.approx(0.975)
    assert ema_momentum(299, 300, 0.96, 0.99) == pytest.approx(
        0.99 - 0.015 * (1 - math.cos(math.pi / 300)))
    warm = official_schedule(0.96, 0.99, 10, warmup=3, start=0.5)
    assert [ema_momentum(e, 10, 0.96, 0.99, 3, 0.5) for e in range(10)] == \
        pytest.approx(warm, abs=1e-15)
    with pytest.raises(ValueError, match='outside'):
        ema_momentum(300, 300, 0.96, 0.99)
    with pytest.raises(ValueError, match="'epoch' or 'iter'"):
        EMATeacherHook(update='step')


class Images(Dataset):

    def __init__(self, n=8):
        g = torch.Generator().manual_seed(0)
        self.imgs = torch.randint(0, 256, (n, 3, 32, 32), generator=g,
                                  dtype=torch.uint8)

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, i):
        return dict(inputs=self.imgs[i], data_samples=DataSample())


def sdae_model():
    return dict(
        type='DBOT',
        data_preprocessor=dict(
            type='SelfSupDataPreprocessor', mean=[127.5] * 3,
            std=[64.] * 3, to_rgb=True),
        backbone=dict(type='DBOTViT', arch=copy.deepcopy(ARCH), img_size=32,
                      patch_size=8, mask_ratio=0.75),
        neck=dict(type='DBOTDecoder', decoder_embed_dim=32, decoder_depth=1,
                  decoder_num_heads=2),
        head=dict(type='MaskedDistillHead',
                  loss=dict(type='DistillCosineLoss', dim=1)),
        teacher=dict(type='EMATeacher', shrink_num=12, num_folds=3),
        init_teacher_from_student=False)


class Probe(Hook):
    """Snapshots teacher and student around the EMA hook's update."""

    def __init__(self, record, key, priority):
        self.record, self.key, self.priority = record, key, priority

    def _snap(self, runner, event):
        model = runner.model
        self.record.append(dict(
            key=self.key, event=event, epoch=runner.epoch, iter=runner.iter,
            teacher=copy.deepcopy(model.teacher.state_dict()),
            student=copy.deepcopy(model.backbone.state_dict())))

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self._snap(runner, 'iter')

    def after_train_epoch(self, runner):
        self._snap(runner, 'epoch')


def make_runner(work_dir, ema, max_epochs=3, resume_from=None, record=None):
    init_default_scope('mmpretrain')
    record = [] if record is None else record
    return Runner(
        model=sdae_model(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=Images(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            batch_size=4,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(
            logger=None, checkpoint=dict(type='CheckpointHook', interval=1)),
        custom_hooks=[
            dict(type='EpochSeedHook'),
            dict(type='EMATeacherHook', **ema),
            Probe(record, 'before', 'ABOVE_NORMAL'),
            Probe(record, 'after', 'BELOW_NORMAL'),
        ],
        randomness=dict(seed=3),
        resume=resume_from is not None,
        load_from=resume_from,
        default_scope='mmpretrain',
        log_level='WARNING'), record


def check_updates(record, event, momenta):
    """Every update is exactly m * teacher + (1 - m) * student."""
    before = [r for r in record if r['key'] == 'before' and r['event'] ==
              event]
    after = [r for r in record if r['key'] == 'after' and r['event'] ==
             event]
    assert len(before) == len(after) == len(momenta)
    for b, a, m in zip(before, after, momenta):
        assert (b['epoch'], b['iter']) == (a['epoch'], a['iter'])
        for name, t in b['teacher'].items():
            if name == 'active_depth':
                continue
            expected = t * m + b['student'][name] * (1 - m)
            assert torch.equal(a['teacher'][name], expected), (name, m)
        moved = (a['teacher']['cls_token'] - b['teacher']['cls_token'])
        assert moved.abs().max() > 0


def test_per_epoch_update_is_exact(tmp_path):
    ema = dict(momentum=0.9, final_momentum=0.99, update='epoch')
    runner, record = make_runner(tmp_path, ema)
    runner.train()
    momenta = [ema_momentum(e, 3, 0.9, 0.99) for e in range(3)]
    # 0.99 - 0.045 * (1 + cos(pi / 3)) = 0.9225
    assert momenta[0] == 0.9 and momenta[1] == pytest.approx(0.9225)
    check_updates(record, 'epoch', momenta)
    # no update inside an epoch: after each iteration but the last of an
    # epoch, the teacher is unchanged
    iters = [r for r in record if r['key'] == 'after' and r['event'] ==
             'iter']
    assert len(iters) == 6
    assert torch.equal(iters[0]['teacher']['cls_token'],
                       iters[1]['teacher']['cls_token'])
    assert runner.message_hub.get_scalar(
        'train/ema_momentum').current() == momenta[-1]


@pytest.mark.parametrize('schedule_by', ['epoch', 'iter'])
def test_per_iter_update_is_exact(tmp_path, schedule_by):
    ema = dict(momentum=0.9, final_momentum=0.99, update='iter',
               schedule_by=schedule_by)
    runner, record = make_runner(tmp_path, ema, max_epochs=2)
    runner.train()
    # 8 images / batch 4 = 2 iterations per epoch, 4 in all
    if schedule_by == 'epoch':  # official per_ite: the epoch's entry
        momenta = [ema_momentum(e, 2, 0.9, 0.99) for e in (0, 0, 1, 1)]
    else:
        momenta = [ema_momentum(i, 4, 0.9, 0.99) for i in range(4)]
    assert len(set(momenta)) == (2 if schedule_by == 'epoch' else 4)
    check_updates(record, 'iter', momenta)


def test_interval_skips_epochs(tmp_path):
    ema = dict(momentum=0.9, final_momentum=0.99, interval=2)
    runner, record = make_runner(tmp_path, ema, max_epochs=3)
    runner.train()
    after = [r for r in record if r['key'] == 'after' and r['event'] ==
             'epoch']
    before = [r for r in record if r['key'] == 'before' and r['event'] ==
              'epoch']
    # (epoch + 1) % 2 == 0: only after epoch index 1 (official ema_frequent)
    assert torch.equal(after[0]['teacher']['cls_token'],
                       before[0]['teacher']['cls_token'])
    m = ema_momentum(1, 3, 0.9, 0.99)
    for name, t in before[1]['teacher'].items():
        if name != 'active_depth':
            assert torch.equal(after[1]['teacher'][name],
                               t * m + before[1]['student'][name] * (1 - m))
    assert torch.equal(after[2]['teacher']['cls_token'],
                       before[2]['teacher']['cls_token'])


def test_teacher_saved_and_restored_on_resume(tmp_path):
    ema = dict(momentum=0.9, final_momentum=0.99)
    full, record = make_runner(tmp_path / 'full', ema)
    full.train()
    after = [r for r in record if r['key'] == 'after' and r['event'] ==
             'epoch']
    # each checkpoint holds the teacher as updated at the end of its epoch
    for epoch in (1, 2, 3):
        state = safe_load(str(tmp_path / 'full' / f'epoch_{epoch}.pth'),
                          map_location='cpu')['state_dict']
        for name, value in after[epoch - 1]['teacher'].items():
            assert torch.equal(state['teacher.' + name], value), name

    ckpt = str(tmp_path / 'full' / 'epoch_2.pth')
    resumed, record2 = make_runner(tmp_path / 'resumed', ema,
                                   resume_from=ckpt)
    resumed.train()
    before = [r for r in record2 if r['key'] == 'before' and r['event'] ==
              'epoch']
    assert [r['epoch'] for r in before] == [2]
    # the restored teacher is the saved one and gets epoch 2's momentum
    for name, value in after[1]['teacher'].items():
        assert torch.equal(before[0]['teacher'][name], value), name
    check_updates(record2, 'epoch', [ema_momentum(2, 3, 0.9, 0.99)])
    # and the resumed run ends where the uninterrupted one did
    for name, value in full.model.teacher.state_dict().items():
        torch.testing.assert_close(
            resumed.model.teacher.state_dict()[name], value, rtol=0, atol=0)
