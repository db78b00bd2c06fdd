"""The paper's pre-training configs carry the official settings and build."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

import dbot_mm  # noqa: F401
from dbot_mm.engine.hooks import StageBootstrapHook
from dbot_mm.models.utils import student_geometry

ROOT = 'configs/pretrain/'
PAPER = {
    # config: (arch, patch, drop path, clip, stages, teacher depths)
    'dbot_vitb.py': ('b', 16, 0.2, 3.0, [0, 800, 1600], [12, 12]),
    'dbot_vitl.py': ('l', 16, 0.2, None, [0, 800, 1600], [0, 24]),
    'dbot_vith.py': ('h', 14, 0.3, None, [0, 800, 1600], [0, 32]),
    'dbot_vitb_3stage.py':
    ('b', 16, 0.2, 3.0, [0, 533, 1066, 1600], [12, 12, 12]),
    'dbot_vitl_3stage.py':
    ('l', 16, 0.2, None, [0, 533, 1066, 1600], [0, 24, 24]),
    'dbot_vith_3stage.py':
    ('h', 14, 0.3, None, [0, 533, 1066, 1600], [0, 32, 32]),
}
WIDTH = {'b': 768, 'l': 1024, 'h': 1280}


def load(name):
    return Config.fromfile(ROOT + name)


def stage_hook(cfg):
    (hook, ) = [h for h in cfg.custom_hooks
                if h['type'] == 'StageBootstrapHook']
    return hook


@pytest.mark.parametrize('name', sorted(PAPER))
def test_paper_values(name):
    arch, patch, dpr, clip, stages, depths = PAPER[name]
    cfg = load(name)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports == dict(
        imports=['dbot_mm'], allow_failed_imports=False)

    m = cfg.model
    assert m.type == 'DBOT' and m.init_teacher_from_student
    assert (m.backbone.type, m.backbone.arch, m.backbone.patch_size) == (
        'DBOTViT', arch, patch)
    assert m.backbone.get('img_size', 224) == 224
    assert m.backbone.mask_ratio == 0.75
    assert m.backbone.drop_path_rate == dpr
    assert m.neck.type == 'DBOTDecoder'
    assert (m.neck.decoder_depth, m.neck.decoder_embed_dim,
            m.neck.decoder_num_heads) == (8, 512, 16)
    # the arch is written once: DBOT derives these from model.backbone
    assert 'embed_dim' not in m.neck and 'num_patches' not in m.neck
    geo = student_geometry(m.backbone)
    assert geo['width'] == WIDTH[arch]
    assert geo['num_patches'] == (224 // patch)**2
    assert m.neck.drop_path_rate == dpr  # official decoder reuses sdpr
    assert m.head.loss == dict(type='DistillSmoothL1Loss', beta=2.0)
    assert m.head.norm_target
    assert m.teacher.get('arch') is None  # the student's arch and sizes
    assert m.teacher.depth == depths[0] and not m.teacher.final_norm

    ow = cfg.optim_wrapper
    assert ow.type == 'AmpOptimWrapper' and ow.dtype in ('float16',
                                                         'bfloat16')
    assert ow.optimizer == dict(
        type='AdamW', lr=1.5e-4 * 4096 / 256, betas=(0.9, 0.95),
        weight_decay=0.05, fused=True)
    assert ow.optimizer.lr == pytest.approx(0.0024)
    # timm's add_weight_decay: biases and 1-D tensors exempt, nothing else
    assert ow.paramwise_cfg == dict(bias_decay_mult=0., flat_decay_mult=0.)
    assert ow.get('clip_grad') == (None if clip is None else dict(
        max_norm=clip))

    assert cfg.train_dataloader.batch_size == 128  # x 32 GPUs = 4096
    assert cfg.auto_scale_lr.base_batch_size == 4096
    assert cfg.train_cfg.max_epochs == 1600
    hook = stage_hook(cfg)
    assert hook.stages == stages and hook.teacher_depths == depths
    assert hook.reinit_student and not hook.reset_optimizer
    StageBootstrapHook(**{k: v for k, v in hook.items() if k != 'type'})

    # one 40-epoch warmup + cosine to 0 per stage, updated every iteration
    sched = cfg.param_scheduler
    assert len(sched) == 2 * (len(stages) - 1)
    for (begin, end), warm, cos in zip(
            zip(stages[:-1], stages[1:]), sched[0::2], sched[1::2]):
        assert (warm.type, warm.begin, warm.end) == ('StageLinearLR', begin,
                                                     begin + 40)
        assert warm.start_factor == 0 and warm.end_factor == 1
        assert (cos.type, cos.begin, cos.end) == ('StageCosineAnnealingLR',
                                                  begin + 40, end)
        assert cos.eta_min == 0
        assert warm.convert_to_iter_based and cos.convert_to_iter_based

    hooks = [h['type'] for h in cfg.custom_hooks]
    assert 'EpochSeedHook' in hooks and 'NonFiniteLossHook' in hooks
    assert cfg.randomness.seed is not None


def test_imagenet_pipeline():
    cfg = load('dbot_vitb.py')
    load_step, crop, flip = cfg.train_pipeline[:3]
    # a corrupt JPEG among 1.28 M files is skipped and counted, not fatal
    assert (load_step.type, load_step.on_error) == ('RobustLoadImageFromFile',
                                                    'skip')
    assert (crop.type, crop.scale, tuple(crop.crop_ratio_range),
            crop.interpolation) == ('RandomResizedCrop', 224, (0.2, 1.0),
                                    'bicubic')
    assert (flip.type, flip.prob) == ('RandomFlip', 0.5)
    dp = cfg.data_preprocessor
    assert dp.type == 'SelfSupDataPreprocessor'
    assert dp.mean == [123.675, 116.28, 103.53]
    assert dp.std == [58.395, 57.12, 57.375]
    assert cfg.train_dataloader.dataset.type == 'ImageNet'


def shrink(model_cfg, max_depth):
    """Same recipe, a 64-wide ViT so that building takes a moment on CPU."""
    cfg = copy.deepcopy(model_cfg)
    arch = dict(
        embed_dims=64,
        num_layers=max(max_depth, 1),
        num_heads=2,
        feedforward_channels=128)
    cfg.backbone.arch = arch  # teacher arch and decoder width follow it
    cfg.neck.update(decoder_embed_dim=32, decoder_depth=1,
                    decoder_num_heads=2)
    return cfg


@pytest.mark.parametrize('name', sorted(PAPER))
def test_builds_shrunk(name):
    init_default_scope('mmpretrain')
    cfg = load(name)
    depths = stage_hook(cfg).teacher_depths
    small = [min(d, 2) for d in depths]
    model_cfg = shrink(cfg.model, max(small))
    model_cfg.teacher.depth = small[0]
    model = MODELS.build(model_cfg)
    model.init_weights()
    assert model.neck.predict_dim == 64  # from the teacher's width
    assert model.teacher.depth == small[0]
    assert model.teacher.num_patches == model.backbone.num_patches
    assert model.neck.embed_dim == 64  # from the student's width
    ow_cfg = copy.deepcopy(cfg.optim_wrapper)
    ow_cfg.type = 'OptimWrapper'  # AmpOptimWrapper needs a GPU
    ow_cfg.pop('dtype'), ow_cfg.pop('loss_scale')
    optim = build_optim_wrapper(model, ow_cfg).optimizer
    in_optim = {id(p): g['weight_decay'] for g in optim.param_groups
                for p in g['params']}
    for name_, p in model.named_parameters():
        if name_.startswith('teacher.') or not p.requires_grad:
            assert id(p) not in in_optim, name_
        elif p.ndim == 1:
            assert in_optim[id(p)] == 0, name_
        else:
            assert in_optim[id(p)] == 0.05, name_
    x = torch.randn(2, 3, 224, 224)
    loss = model.loss(x)['loss']
    assert torch.isfinite(loss)


def _decay_groups(model, optim_wrapper_cfg):
    """(decayed, not decayed) student parameter names of the built optimizer;
    the teacher's must be in neither."""
    ow_cfg = copy.deepcopy(optim_wrapper_cfg)
    ow_cfg.type = 'OptimWrapper'  # AmpOptimWrapper needs a GPU
    ow_cfg.pop('dtype', None), ow_cfg.pop('loss_scale', None)
    optim = build_optim_wrapper(model, ow_cfg).optimizer
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = set(), set()
    for g in optim.param_groups:
        for p in g['params']:
            (decay if g['weight_decay'] else no_decay).add(names[id(p)])
    return decay, no_decay


def test_weight_decay_groups_match_official():
    """Official main_pretrain.py: ``add_weight_decay(model, 0.05)`` without a
    skip list, so cls_token and mask_token are decayed; the sin-cos position
    embeddings are frozen and in no group."""
    init_default_scope('mmpretrain')
    cfg = load('dbot_vitb.py')
    model_cfg = shrink(cfg.model, 1)
    model_cfg.teacher.depth = 1
    model = MODELS.build(model_cfg)
    decay, no_decay = _decay_groups(model, cfg.optim_wrapper)
    block = 'backbone.layers.0.'
    dec = 'neck.decoder_blocks.0.'
    linears = ('attn.qkv', 'attn.proj', 'ffn.layers.0.0', 'ffn.layers.1')
    assert decay == {
        'backbone.cls_token', 'neck.mask_token',
        'backbone.patch_embed.projection.weight',
        'neck.decoder_embed.weight', 'neck.decoder_pred.weight',
        *(p + m + '.weight' for p in (block, dec) for m in linears)}
    assert no_decay == {
        'backbone.patch_embed.projection.bias', 'neck.decoder_embed.bias',
        'neck.decoder_pred.bias', 'backbone.ln1.weight', 'backbone.ln1.bias',
        'neck.ln1.weight', 'neck.ln1.bias',
        *(p + m + '.bias' for p in (block, dec) for m in linears),
        *(p + f'ln{i}.{w}' for p in (block, dec) for i in (1, 2)
          for w in ('weight', 'bias'))}
    assert not (decay | no_decay) & {
        'backbone.pos_embed', 'neck.decoder_pos_embed'}
    assert not any(n.startswith('teacher.') for n in decay | no_decay)


@pytest.mark.slow
def test_vitb_builds_full_size():
    init_default_scope('mmpretrain')
    cfg = load('dbot_vitb.py')
    model = MODELS.build(cfg.model)
    student = sum(p.numel() for p in model.backbone.parameters())
    teacher = sum(p.numel() for p in model.teacher.parameters())
    assert 85e6 < student < 87e6 and teacher == student - 2 * 768
    assert model.neck.predict_dim == 768


def test_demo_config():
    cfg = load('dbot_demo_fashion-mnist.py')
    hook = stage_hook(cfg)
    assert len(hook.stages) - 1 >= 2
    assert hook.stages[-1] == cfg.train_cfg.max_epochs
    assert cfg.train_dataloader.dataset.data_root == 'data/fashion_mnist'
    assert cfg.model.backbone.img_size == 32
    assert cfg.model.teacher.depth == hook.teacher_depths[0]
    assert cfg.default_hooks.checkpoint.interval == (hook.stages[1] -
                                                     hook.stages[0])
    assert 'KNNMonitorHook' in [h['type'] for h in cfg.custom_hooks]
    assert cfg.train_pipeline[0].type == 'RobustLoadImageFromFile'
    knn = [h for h in cfg.custom_hooks if h['type'] == 'KNNMonitorHook'][0]
    for loader in (knn['train_dataloader'], knn['val_dataloader']):
        assert loader['dataset']['pipeline'][0] == dict(
            type='RobustLoadImageFromFile', on_error='raise')
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert torch.isfinite(model.loss(torch.randn(2, 3, 32, 32))['loss'])


# ------------------------------------------------ target study (Table 1)
TARGET_ROWS = {
    # config: (target type, stage boundaries or None without the hook)
    'pixel.py': ('PixelTarget', None),
    'hog.py': ('HOGTarget', None),
    'random_1stage.py': ('ViTTeacher', None),
    'dbot_2stage.py': ('ViTTeacher', [0, 800, 1600]),
    'dbot_3stage.py': ('ViTTeacher', [0, 533, 1066, 1600]),
    'pretrained_teacher.py': ('PretrainedTeacher', None),
}
# what a row may change: the target keys and the stages
TARGET_KEYS = ('teacher', 'head', 'init_teacher_from_student')
STAGE_KEYS = ('param_scheduler', 'custom_hooks', 'stages', 'teacher_depths',
              'teacher_checkpoint')


def _without(cfg, keys, model_keys):
    d = copy.deepcopy(cfg.to_dict())
    for k in keys:
        d.pop(k, None)
    for k in model_keys:
        d['model'].pop(k, None)
    return d


@pytest.mark.parametrize('name', sorted(TARGET_ROWS))
def test_target_rows_differ_only_in_target_keys(name):
    kind, stages = TARGET_ROWS[name]
    base = load('dbot_vitb.py')
    cfg = load('targets/' + name)
    assert _without(cfg, STAGE_KEYS, TARGET_KEYS) == \
        _without(base, STAGE_KEYS, TARGET_KEYS)
    assert cfg.model.teacher.type == kind
    hooks = {h['type']: h for h in cfg.custom_hooks}
    assert {'EpochSeedHook', 'NonFiniteLossHook'} <= set(hooks)
    if stages is None:
        assert 'StageBootstrapHook' not in hooks
        assert len(cfg.param_scheduler) == 2  # one warmup + cosine
        assert cfg.param_scheduler[1].end == 1600
    else:
        assert hooks['StageBootstrapHook'].stages == stages
        assert len(cfg.param_scheduler) == 2 * (len(stages) - 1)
    if kind in ('PixelTarget', 'HOGTarget'):
        assert cfg.model.head.loss == dict(type='DistillL2Loss')
        assert not cfg.model.head.norm_target
    else:
        assert cfg.model.head == base.model.head


def _expected_loss(head_cfg, pred, target, mask):
    """The head's formula written out from the config."""
    import torch.nn.functional as F
    t = target.float()
    if head_cfg.norm_target:
        t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) +
                                              1e-6).sqrt()
    loss = head_cfg.loss
    if loss.type == 'DistillCosineLoss' and loss.get('dim') == 1:
        return 1 - F.cosine_similarity(pred, t, dim=1).mean()
    if loss.type == 'DistillSmoothL1Loss':
        per = F.smooth_l1_loss(pred, t, reduction='none',
                               beta=loss.beta).mean(-1)
    elif loss.type == 'DistillL2Loss':
        per = (pred - t).pow(2).mean(-1)
    else:
        per = 1 - F.cosine_similarity(pred, t, dim=-1)
    return (per * mask).sum() / mask.sum()


def _train_step_shrunk(cfg, tmp_path):
    """Build the config's model as a 64-wide ViT, check the loss against its
    formula and take one optimizer step; returns the model."""
    init_default_scope('mmpretrain')
    model_cfg = shrink(cfg.model, 2)
    teacher = model_cfg.teacher
    if 'depth' in teacher:
        teacher.depth = min(teacher.depth, 2)
    if teacher.type == 'PretrainedTeacher':
        donor_cfg = shrink(load('dbot_vitb.py').model, 2)
        donor_cfg.teacher.depth = 2
        donor = MODELS.build(donor_cfg)
        path = str(tmp_path / 'teacher.pth')
        torch.save({'state_dict': {'backbone.' + k: v for k, v in
                                   donor.backbone.state_dict().items()}},
                   path)
        teacher.checkpoint = path
    model = MODELS.build(model_cfg)
    model.init_weights()
    ow_cfg = copy.deepcopy(cfg.optim_wrapper)
    ow_cfg.type = 'OptimWrapper'  # AmpOptimWrapper needs a GPU
    ow_cfg.pop('dtype'), ow_cfg.pop('loss_scale')
    ow_cfg.optimizer.fused = False
    optim = build_optim_wrapper(model, ow_cfg)

    seen = {}
    original = model.head.loss

    def spy(pred, target, mask):
        seen.update(pred=pred, target=target, mask=mask)
        return original(pred, target, mask)

    model.head.loss = spy
    model.train()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    loss = model.loss(x)['loss']
    torch.testing.assert_close(
        loss, _expected_loss(cfg.model.head, seen['pred'], seen['target'],
                             seen['mask']))
    before = model.neck.decoder_pred.weight.detach().clone()
    teacher_before = copy.deepcopy(model.teacher.state_dict())
    optim.update_params(loss)
    assert torch.isfinite(loss)
    assert not torch.equal(model.neck.decoder_pred.weight, before)
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k
    return model, seen


@pytest.mark.parametrize('name', sorted(TARGET_ROWS))
def test_target_rows_build_and_train_a_step(name, tmp_path):
    cfg = load('targets/' + name)
    model, seen = _train_step_shrunk(cfg, tmp_path)
    kind = TARGET_ROWS[name][0]
    n = (224 // 16)**2
    if kind == 'PixelTarget':
        assert seen['target'].shape == (2, n, 16 * 16 * 3)  # no cls
    elif kind == 'HOGTarget':
        assert seen['target'].shape == (2, n, 108)
    else:
        assert seen['target'].shape == (2, 1 + n, 64)  # cls counts
        assert torch.all(seen['mask'][:, 0] == 1)
    assert model.neck.predict_dim == seen['target'].shape[-1]


def test_sdae_recipe():
    cfg = load('sdae_vitb.py')
    m = cfg.model
    assert m.backbone.arch == 'b' and m.backbone.patch_size == 16
    assert m.backbone.mask_ratio == 0.75 and m.backbone.drop_path_rate == 0.25
    assert m.neck.drop_path_rate == 0 and m.neck.decoder_depth == 8
    assert m.neck.decoder_embed_dim == 512
    assert m.teacher == dict(type='EMATeacher', final_norm=True,
                             shrink_num=147, num_folds=3)
    assert not m.init_teacher_from_student
    assert m.head.norm_target and m.head.loss == dict(
        type='DistillCosineLoss', dim=1)
    assert cfg.train_cfg.max_epochs == 300
    assert cfg.train_dataloader.batch_size == 96
    assert cfg.auto_scale_lr.base_batch_size == 96 * 8
    opt = cfg.optim_wrapper.optimizer
    assert opt.lr == pytest.approx(2.666e-4 * 768 / 256)
    assert opt.weight_decay == 0.04 and opt.betas == (0.9, 0.95)
    assert 'clip_grad' not in cfg.optim_wrapper
    assert 'custom_keys' not in cfg.optim_wrapper.paramwise_cfg
    warm, cos = cfg.param_scheduler
    assert (warm.begin, warm.end, cos.begin, cos.end) == (0, 60, 60, 300)
    hooks = {h['type']: h for h in cfg.custom_hooks}
    assert 'StageBootstrapHook' not in hooks
    assert hooks['EMATeacherHook'] == dict(
        type='EMATeacherHook', momentum=0.96, final_momentum=0.99,
        update='epoch', interval=1)


def test_sdae_builds_shrunk_and_trains_a_step(tmp_path):
    cfg = load('sdae_vitb.py')
    model, seen = _train_step_shrunk(cfg, tmp_path)
    # 147 hidden patches in 3 folds of 49, each a separate teacher view
    assert seen['target'].shape == (2 * 3, 49, 64)
    assert torch.equal(seen['mask'], torch.ones(6, 49))
    before = copy.deepcopy(model.teacher.state_dict())
    student = copy.deepcopy(model.backbone.state_dict())
    model.ema_update_teacher(0.96)
    for k, v in model.teacher.state_dict().items():
        if k != 'active_depth':
            assert torch.equal(v, before[k] * 0.96 + student[k] * (1 - 0.96))


def test_switching_target_row_keeps_student_and_optimizer(tmp_path):
    """Same student / decoder tensors and optimizer groups in every row."""
    init_default_scope('mmpretrain')

    def layout(name):
        cfg = load(name)
        model_cfg = shrink(cfg.model, 2)
        if 'depth' in model_cfg.teacher:
            model_cfg.teacher.depth = 2
        model_cfg.teacher.pop('checkpoint', None)
        model = MODELS.build(model_cfg)
        ow_cfg = copy.deepcopy(cfg.optim_wrapper)
        ow_cfg.type = 'OptimWrapper'
        ow_cfg.pop('dtype'), ow_cfg.pop('loss_scale')
        ow_cfg.optimizer.fused = False
        optim = build_optim_wrapper(model, ow_cfg).optimizer
        names = {id(p): n for n, p in model.named_parameters()}
        groups = sorted((names[id(p)], g['lr'], g['weight_decay'])
                        for g in optim.param_groups for p in g['params'])
        params = {n: tuple(p.shape) for n, p in model.named_parameters()
                  if not n.startswith(('teacher.', 'neck.decoder_pred.'))}
        return params, [g for g in groups
                        if not g[0].startswith('neck.decoder_pred.')]

    ref = layout('dbot_vitb.py')
    for name in sorted(TARGET_ROWS):
        assert layout('targets/' + name) == ref, name


# ------------------------------------------- quiet optimizer construction
def _pretrain_configs():
    import glob
    import os.path as osp
    root = osp.dirname(osp.normpath(ROOT))
    files = glob.glob(osp.join(ROOT, '**', '*.py'), recursive=True)
    files += glob.glob(osp.join(root, 'reproduce', '*_fashion-mnist.py'))
    return sorted(osp.relpath(f, root) for f in files)


@pytest.mark.parametrize('rel', _pretrain_configs())
def test_frozen_teacher_is_skipped_quietly(rel):
    """mmengine's default constructor logs one warning per frozen parameter
    (a ViT-B teacher: ~150 lines); every pre-training config with a frozen
    teacher or a frozen sin-cos table builds its optimizer without them."""
    cfg = Config.fromfile('configs/' + rel)
    assert 'teacher' in cfg.model or cfg.model.type == 'MAE', rel
    assert cfg.optim_wrapper.constructor == \
        'FrozenSkipOptimWrapperConstructor', rel


# ------------------------------------------ dBOT ViT-H/14 teacher rows
@pytest.mark.parametrize('name,student,base', [
    ('dbot_vitb_teacher-vith.py', 'b', 'dbot_vitb_teacher-vitl.py'),
    ('dbot_vitl_teacher-vith.py', 'l', 'dbot_vitl.py'),
])
def test_vith_teacher_rows(name, student, base, monkeypatch):
    monkeypatch.delenv('DBOT_TEACHER', raising=False)
    cfg, ref = load(name), load(base)
    m = cfg.model
    assert m.backbone.arch == student and m.backbone.patch_size == 16
    assert m.teacher == dict(
        type='PretrainedTeacher', arch='h', patch_size=14, img_size=196,
        checkpoint='checkpoints/dbot_vith_backbone.pth', prefix='backbone.',
        final_norm=False)
    assert m.init_teacher_from_student is False
    # the student's recipe is its row's: only the teacher and the one
    # fixed-teacher stage differ
    assert m.backbone == ref.model.backbone and m.neck == ref.model.neck
    assert m.head == ref.model.head
    assert cfg.optim_wrapper == ref.optim_wrapper
    assert cfg.train_cfg.max_epochs == 1600
    hooks = [h['type'] for h in cfg.custom_hooks]
    assert hooks == ['EpochSeedHook', 'NonFiniteLossHook']
    warm, cos = cfg.param_scheduler
    assert (warm.begin, warm.end, cos.begin, cos.end) == (0, 40, 40, 1600)
    init_default_scope('mmpretrain')
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    # 196 px through 14 px patches: the student's 14 x 14 grid
    assert model.teacher.num_patches == model.backbone.num_patches == 196
    assert model.neck.predict_dim == 1280
