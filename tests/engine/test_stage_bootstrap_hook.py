"""StageBootstrapHook: when it fires, what it does to a real DBOT, and that a
resumed run (from the boundary or any other checkpoint) ends bit-identical."""
import copy
import os
import socket
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS
from torch import nn

import dbot_mm  # noqa: F401
from dbot_mm.engine.hooks import StageBootstrapHook

DEMO_CFG = 'configs/pretrain/dbot_demo_fashion-mnist.py'


class FakeDBOT(nn.Module):
    """Just the interface the hook relies on, recording the calls."""

    def __init__(self, teacher_depth=2, num_layers=2):
        super().__init__()
        self.student = nn.Linear(4, 4)
        self.teacher = nn.Linear(4, 4).requires_grad_(False)
        self.teacher.num_layers = num_layers
        self.teacher_depth = teacher_depth
        self.register_buffer('stage', torch.zeros((), dtype=torch.long))
        self.calls = []

    def bootstrap_teacher(self, depth):
        self.calls.append(('bootstrap', depth, int(self.stage)))
        self.teacher_depth = depth

    def reinit_student(self, seed):
        self.calls.append(('reinit', seed, int(self.stage)))

    def teacher_info(self):
        return dict(
            origin='x', depth=self.teacher_depth, stage=int(self.stage))


def fake_runner(model, epoch=0, max_epochs=6, seed=7, optim_wrapper=None):
    return SimpleNamespace(
        model=model,
        epoch=epoch,
        max_epochs=max_epochs,
        seed=seed,
        optim_wrapper=optim_wrapper,
        logger=MMLogger.get_instance('test_stage_bootstrap_hook'))


def run_epochs(hook, runner, epochs):
    for epoch in epochs:
        runner.epoch = epoch
        hook.before_train_epoch(runner)


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize('kwargs,msg', [
    (dict(stages=[0, 3, 3, 6], teacher_depths=[2, 2, 2]),
     '`stages` must be strictly increasing'),
    (dict(stages=[1, 3, 6], teacher_depths=[2, 2]),
     '`stages` must start at epoch 0'),
    (dict(stages=[0, 3, 6], teacher_depths=[2, 2, 2]),
     '`teacher_depths` needs one entry per stage'),
    (dict(stages=[0, 3, 6], teacher_depths=[2, -1]),
     '`teacher_depths` must be non-negative'),
])
def test_rejects_bad_stage_config(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        StageBootstrapHook(**kwargs)


def test_stages_must_end_at_max_epochs():
    hook = StageBootstrapHook(stages=[0, 3, 8], teacher_depths=[2, 2])
    with pytest.raises(ValueError, match=r'end at train_cfg.max_epochs \(6\)'):
        hook.before_train(fake_runner(FakeDBOT(), max_epochs=6))


def test_teacher_depth_must_match_model():
    hook = StageBootstrapHook(stages=[0, 3, 6], teacher_depths=[0, 2])
    with pytest.raises(ValueError, match=r'teacher_depths\[0\]` is 0'):
        hook.before_train(fake_runner(FakeDBOT(teacher_depth=2)))
    hook = StageBootstrapHook(stages=[0, 3, 6], teacher_depths=[2, 4])
    with pytest.raises(ValueError, match='builds 2; raise'):
        hook.before_train(fake_runner(FakeDBOT(num_layers=2)))


def test_needs_dbot_interface():
    hook = StageBootstrapHook(stages=[0, 3, 6], teacher_depths=[2, 2])
    with pytest.raises(TypeError, match='lacks'):
        hook.before_train(fake_runner(nn.Linear(2, 2)))


# ---------------------------------------------------------------- when
def test_bootstraps_once_per_boundary():
    model = FakeDBOT()
    hook = StageBootstrapHook(stages=[0, 2, 4, 6], teacher_depths=[2, 1, 0])
    runner = fake_runner(model)
    hook.before_train(runner)
    run_epochs(hook, runner, [0, 1, 2, 2, 3, 4, 5])  # epoch 2 twice
    assert model.calls == [('bootstrap', 1, 0), ('reinit', 7 + 1, 0),
                           ('bootstrap', 0, 1), ('reinit', 7 + 2, 1)]
    assert int(model.stage) == 2


def test_resume_from_boundary_checkpoint_bootstraps_once():
    # epoch_2.pth is written after epoch 2 finished, before the boundary:
    # stage 0 is saved and training resumes at epoch 2.
    model = FakeDBOT()
    hook = StageBootstrapHook(stages=[0, 2, 4], teacher_depths=[2, 2])
    runner = fake_runner(model, epoch=2, max_epochs=4)
    hook.before_train(runner)
    run_epochs(hook, runner, [2, 3])
    assert [c[0] for c in model.calls] == ['bootstrap', 'reinit']
    # a checkpoint from inside stage 2 already carries stage=1
    resumed = FakeDBOT()
    resumed.stage.fill_(1)
    runner = fake_runner(resumed, epoch=3, max_epochs=4)
    hook = StageBootstrapHook(stages=[0, 2, 4], teacher_depths=[2, 2])
    hook.before_train(runner)
    run_epochs(hook, runner, [3])
    assert resumed.calls == []


def test_inconsistent_stage_is_an_error():
    model = FakeDBOT()
    model.stage.fill_(1)  # a stage-2 model restarted at epoch 0
    hook = StageBootstrapHook(stages=[0, 2, 4], teacher_depths=[2, 2])
    with pytest.raises(RuntimeError, match='load_from'):
        hook.before_train(fake_runner(model, epoch=0, max_epochs=4))
    hook = StageBootstrapHook(stages=[0, 2, 4, 6], teacher_depths=[2, 2, 2])
    with pytest.raises(RuntimeError, match='2 boundaries'):
        run_epochs(hook, fake_runner(FakeDBOT(), max_epochs=6), [4])


@pytest.mark.parametrize('reset', [False, True])
def test_optimizer_state_kept_or_reset(reset):
    model = FakeDBOT()
    optim = torch.optim.AdamW(model.student.parameters())
    model.student(torch.ones(1, 4)).sum().backward()
    optim.step()
    hook = StageBootstrapHook(
        stages=[0, 1, 2], teacher_depths=[2, 2], reset_optimizer=reset)
    runner = fake_runner(
        model, max_epochs=2, optim_wrapper=OptimWrapper(optim))
    hook.before_train(runner)
    run_epochs(hook, runner, [1])
    assert (len(optim.state) == 0) == reset


def test_seed_defaults_to_run_seed():
    model = FakeDBOT()
    hook = StageBootstrapHook(stages=[0, 1, 2], teacher_depths=[2, 2])
    runner = fake_runner(model, max_epochs=2, seed=123)
    hook.before_train(runner)
    run_epochs(hook, runner, [1])
    assert ('reinit', 124, 0) in model.calls


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_unwraps_ddp():
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel
    dist.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{_free_port()}',
        rank=0,
        world_size=1)
    try:
        model = FakeDBOT()
        wrapped = MMDistributedDataParallel(module=model, device_ids=None)
        hook = StageBootstrapHook(stages=[0, 1, 2], teacher_depths=[2, 2])
        runner = fake_runner(wrapped, max_epochs=2)
        hook.before_train(runner)
        run_epochs(hook, runner, [0, 1])
        assert int(model.stage) == 1 and len(model.calls) == 2
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------- what
def build_tiny_dbot():
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(DEMO_CFG)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def student_params(model):
    return {
        f'{name}.{k}': v
        for name, module in model.student_modules().items()
        for k, v in module.named_parameters()
    }


def test_boundary_on_real_dbot():
    torch.manual_seed(0)
    model = build_tiny_dbot()
    fresh = build_tiny_dbot()  # reference statistics of a new student
    with torch.no_grad():  # stand-in for stage-1 training
        for p in student_params(model).values():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    trained_encoder = copy.deepcopy(model.backbone.state_dict())
    trained = {k: v.detach().clone() for k, v in student_params(model).items()}
    objects = {k: id(v) for k, v in model.state_dict(keep_vars=True).items()}
    rng_before = torch.get_rng_state()

    hook = StageBootstrapHook(stages=[0, 1, 2], teacher_depths=[4, 4])
    runner = fake_runner(model, max_epochs=2, seed=0)
    hook.before_train(runner)
    run_epochs(hook, runner, [0, 1, 1])

    assert int(model.stage) == 1 and model.teacher.depth == 4
    # teacher == the student encoder as it was at the end of stage 1
    for name, value in model.teacher.state_dict().items():
        if name != 'active_depth':
            assert torch.equal(value, trained_encoder[name]), name
    # student redrawn: every trainable tensor changed, with fresh-init stats,
    # but the patch-embed bias (the official initialize_weights keeps it)
    new = student_params(model)
    ref = student_params(fresh)
    for name, p in new.items():
        if not p.requires_grad or name.endswith('patch_embed.projection.bias'):
            assert torch.equal(p, trained[name]), name
            continue
        assert not torch.equal(p, trained[name]), name
        if bool(ref[name].min() == ref[name].max()):  # zero bias, unit norm
            assert torch.equal(p, ref[name]), name
        elif p.numel() >= 256:
            ratio = p.std() / ref[name].std()
            assert 0.8 < ratio < 1.25, (name, float(ratio))
    # edited in place (DDP and the optimizer keep their references) and the
    # global RNG untouched
    assert objects == {
        k: id(v)
        for k, v in model.state_dict(keep_vars=True).items()
    }
    assert torch.equal(rng_before, torch.get_rng_state())


def test_reinit_identical_across_ranks():
    """Two replicas whose students differ end up with the same student."""
    a, b = build_tiny_dbot(), build_tiny_dbot()
    with torch.no_grad():
        for p in student_params(b).values():
            p.add_(1.)
    kept = 'backbone.patch_embed.projection.bias'
    trained = [student_params(m)[kept].clone() for m in (a, b)]
    for model in (a, b):
        hook = StageBootstrapHook(
            stages=[0, 1, 2], teacher_depths=[4, 4], seed=5)
        runner = fake_runner(model, max_epochs=2)
        hook.before_train(runner)
        run_epochs(hook, runner, [1])
    pa, pb = student_params(a), student_params(b)
    for name in pa:
        # the patch-embed bias keeps its trained value (equal on all ranks
        # in a real run, where DDP keeps the replicas equal; not here)
        if name == kept:
            assert torch.equal(pa[name], trained[0])
            assert torch.equal(pb[name], trained[1])
        elif pa[name].requires_grad:
            assert torch.equal(pa[name], pb[name]), name


# ---------------------------------------------------------------- end to end
class _Kill(Exception):
    pass


def _e2e_cfg(work_dir, max_epochs=4, kill_at_iter=None):
    from mmpretrain.registry import DATASETS
    from dbot_mm.engine.schedules import stage_lr_schedulers

    @DATASETS.register_module(name='_RandomImages', force=True)
    class RandomImages(torch.utils.data.Dataset):
        """Random 32 px images; the flip draws from the global RNG like a
        real augmentation."""
        metainfo = dict(classes=('x', ))

        def __init__(self, n=8):
            g = torch.Generator().manual_seed(0)
            self.imgs = torch.randint(
                0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)

        def __len__(self):
            return len(self.imgs)

        def __getitem__(self, i):
            from mmpretrain.structures import DataSample
            img = self.imgs[i]
            if torch.rand(()) < 0.5:
                img = img.flip(-1)
            return dict(inputs=img, data_samples=DataSample())

    stages = [0, max_epochs // 2, max_epochs]
    cfg = Config.fromfile(DEMO_CFG)
    cfg.work_dir = str(work_dir)
    cfg.log_level = 'WARNING'
    cfg.train_dataloader = dict(
        batch_size=4,
        num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=True),
        collate_fn=dict(type='default_collate'),
        dataset=dict(type='_RandomImages'))
    cfg.param_scheduler = stage_lr_schedulers(stages, warmup_epochs=1)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.custom_hooks = [
        dict(type='StageBootstrapHook', stages=stages,
             teacher_depths=[4, 4]),
        dict(type='EpochSeedHook'),
        dict(type='NonFiniteLossHook'),
    ]
    return cfg


def _train(cfg, resume_from=None, kill_at_iter=None):
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    class Killer(Hook):

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if runner.iter == kill_at_iter:
                raise _Kill()

    cfg = copy.deepcopy(cfg)
    if resume_from is not None:
        cfg.resume = True
        cfg.load_from = None if resume_from == 'auto' else resume_from
    runner = Runner.from_cfg(cfg)
    if kill_at_iter is not None:
        runner.register_hook(Killer())
    runner.train()
    return {k: v.clone() for k, v in runner.model.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_is_bit_identical(tmp_path):
    """~4 s on an idle 2-core machine: three tiny Runner runs."""
    cfg = _e2e_cfg(tmp_path / 'full')
    full = _train(cfg)  # 2 stages x 2 epochs, 2 iterations each
    assert int(full['stage']) == 1
    boundary = torch.load(
        tmp_path / 'full' / 'epoch_2.pth', map_location='cpu',
        weights_only=False)['state_dict']
    assert int(boundary['stage']) == 0  # saved before the bootstrap
    assert not torch.equal(full['teacher.layers.0.attn.qkv.weight'],
                           boundary['teacher.layers.0.attn.qkv.weight'])

    # resumed from the checkpoint written at the stage boundary
    resumed = _train(
        _e2e_cfg(tmp_path / 'boundary'),
        resume_from=str(tmp_path / 'full' / 'epoch_2.pth'))
    _assert_same(full, resumed)

    # killed in the middle of epoch 4 (stage 2), then `--resume` (auto)
    killed_cfg = _e2e_cfg(tmp_path / 'killed')
    with pytest.raises(_Kill):
        _train(killed_cfg, kill_at_iter=7)
    assert os.path.exists(tmp_path / 'killed' / 'epoch_3.pth')
    _assert_same(full, _train(killed_cfg, resume_from='auto'))
