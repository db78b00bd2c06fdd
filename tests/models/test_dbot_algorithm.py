import copy

import pytest
import torch
from mmpretrain.models.utils import build_2d_sincos_position_embedding
from mmpretrain.registry import MODELS

from dbot_tiny import ARCH, NUM_PATCHES

FIXED = ('backbone.pos_embed', 'neck.decoder_pos_embed')
PATCH_BIAS = 'backbone.patch_embed.projection.bias'


def _noise(seed):
    return torch.rand(2, NUM_PATCHES,
                      generator=torch.Generator().manual_seed(seed))


def _student_params(model):
    return {n: p for n, p in model.named_parameters()
            if not n.startswith('teacher.')}


@torch.no_grad()
def _perturb(model, seed=123):
    """Stand-in for training: move every student tensor off its init."""
    g = torch.Generator().manual_seed(seed)
    for n, p in _student_params(model).items():
        if n not in FIXED:
            p.add_(torch.randn(p.shape, generator=g) * 0.1)


def _assert_teacher_equals_student(model, depth):
    student = model.backbone.state_dict()
    for name, value in model.teacher.state_dict().items():
        if name == 'active_depth':
            assert int(value) == depth
        elif name.startswith('layers.') and int(name.split('.')[1]) >= depth:
            continue
        else:
            torch.testing.assert_close(value, student[name], msg=name)


def test_loss_finite_and_reproducible(make_dbot, images):
    model = make_dbot()
    model.train()
    first = model.loss(images, None, noise=_noise(0))['loss']
    again = model.loss(images, None, noise=_noise(0))['loss']
    other = model.loss(images, None, noise=_noise(1))['loss']
    assert first.dim() == 0 and torch.isfinite(first)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    # a 0/1 mask replays the same masking as the noise that made it; the
    # visible tokens then reach the encoder in index order instead of noise
    # order, so attention sums in another order (last-bit differences for
    # about 4 in 10 random inits): equal up to rounding, not bitwise.
    _, mask, _ = model.backbone(images, noise=_noise(0))
    torch.testing.assert_close(
        model.loss(images, None, mask=mask)['loss'], first, rtol=1e-6,
        atol=0)
    with pytest.raises(ValueError, match='ones per row'):
        model.loss(images, None, mask=torch.zeros(2, NUM_PATCHES))
    # mode='loss' of the runner goes through the same path
    assert torch.isfinite(model(images, None, mode='loss')['loss'])


def test_backward_reaches_only_the_student(make_dbot, images):
    model = make_dbot()
    model.train()
    model.loss(images, None, noise=_noise(0))['loss'].backward()
    for n, p in model.named_parameters():
        if n.startswith('teacher.'):
            assert p.grad is None, n
        elif p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        else:
            assert n in FIXED


def test_cls_token_counts_in_the_loss(make_dbot, images):
    model = make_dbot()
    captured = {}
    original = model.head.loss

    def spy(pred, target, mask):
        captured.update(pred=pred, target=target, mask=mask)
        return original(pred, target, mask)

    model.head.loss = spy
    model.loss(images, None, noise=_noise(0))
    assert captured['pred'].shape == captured['target'].shape == (
        2, 1 + NUM_PATCHES, ARCH['embed_dims'])
    assert torch.all(captured['mask'][:, 0] == 1)
    assert torch.all(captured['mask'][:, 1:].sum(1) == NUM_PATCHES * 0.75)


def test_init_teacher_from_student(make_dbot, make_cfg, images):
    model = make_dbot()
    _assert_teacher_equals_student(model, depth=2)
    assert model.teacher_info() == dict(origin='student_init', depth=2,
                                        stage=0)
    # depth-0 stage-1 teacher (official ViT-L/H): embeddings come along
    cfg = make_cfg()
    cfg['teacher']['depth'] = 0
    model0 = MODELS.build(cfg)
    model0.init_weights()
    _assert_teacher_equals_student(model0, depth=0)
    assert torch.isfinite(model0.loss(images)['loss'])

    apart = make_dbot(init_teacher_from_student=False)
    assert not torch.equal(apart.teacher.cls_token, apart.backbone.cls_token)
    assert apart.teacher_info()['origin'] == 'random'


def test_bootstrap_teacher_in_place(make_dbot):
    model = make_dbot()
    _perturb(model)
    ids = {n: id(p) for n, p in model.named_parameters()}
    model.stage.add_(1)
    model.bootstrap_teacher(1)
    assert {n: id(p) for n, p in model.named_parameters()} == ids
    _assert_teacher_equals_student(model, depth=1)
    assert model.teacher_info() == dict(origin='bootstrapped', depth=1,
                                        stage=1)
    assert all(not p.requires_grad for p in model.teacher.parameters())
    with pytest.raises(ValueError, match='num_layers'):
        model.bootstrap_teacher(3)


def test_bootstrap_width_mismatch_is_clear(make_cfg):
    cfg = make_cfg(init_teacher_from_student=False)
    cfg['teacher']['arch'] = dict(ARCH, embed_dims=48)
    model = MODELS.build(cfg)  # distillation from a wider teacher is fine
    assert model.neck.predict_dim == 48
    with pytest.raises(ValueError, match='embed_dims'):
        model.bootstrap_teacher(2)


def test_reinit_student_redraws_everything(make_dbot):
    model = make_dbot()
    fresh = make_dbot()  # reference statistics of a newly built model
    _perturb(model)
    teacher_before = copy.deepcopy(model.teacher.state_dict())
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = {n: id(p) for n, p in model.named_parameters()}
    twin = copy.deepcopy(model)
    rng = torch.get_rng_state()

    model.reinit_student(seed=7)

    assert torch.equal(torch.get_rng_state(), rng)
    assert {n: id(p) for n, p in model.named_parameters()} == ids
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k
    fresh_params = dict(fresh.named_parameters())
    for n, p in _student_params(model).items():
        if n in FIXED:
            torch.testing.assert_close(p, fresh_params[n])
            continue
        if n == PATCH_BIAS:  # kept, see test_reinit_student_biases
            continue
        changed = (p != trained[n]).float().mean()
        assert changed > 0.9, n
        if n.endswith('ln1.weight') or n.endswith('ln2.weight'):
            assert torch.all(p == 1), n
        if p.numel() >= 1000:
            ratio = p.std() / fresh_params[n].std()
            assert 0.85 < ratio < 1.15, (n, ratio)
    sincos = build_2d_sincos_position_embedding(4, 32, cls_token=True)
    torch.testing.assert_close(model.backbone.pos_embed.data, sincos.float())

    twin.reinit_student(seed=7)
    for (n, a), b in zip(model.state_dict().items(),
                         twin.state_dict().values()):
        assert torch.equal(a, b), n
    twin.reinit_student(seed=8)
    assert not torch.equal(twin.backbone.layers[0].attn.qkv.weight,
                           model.backbone.layers[0].attn.qkv.weight)


def _linear_biases(model):
    return {f'{name}.bias': m.bias for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and m.bias is not None
            and not name.startswith('teacher.')}


def test_reinit_student_biases(make_dbot):
    """Official ``initialize_weights``: Linear biases 0, patch-embed bias
    untouched (only its weight is redrawn)."""
    model = make_dbot()
    biases = _linear_biases(model)
    # FFN, qkv, proj of 2 encoder + 2 decoder blocks, decoder embed / pred
    assert len(biases) == 4 * 4 + 2
    for n, b in biases.items():  # a fresh build starts the same way
        assert torch.count_nonzero(b) == 0, n
    _perturb(model)
    trained_patch_bias = model.backbone.patch_embed.projection.bias.clone()
    trained_patch_weight = model.backbone.patch_embed.projection.weight.clone()
    assert all(torch.count_nonzero(b) == b.numel() for b in biases.values())

    model.reinit_student(seed=7)

    for n, b in _linear_biases(model).items():
        assert torch.count_nonzero(b) == 0, n
    assert torch.equal(model.backbone.patch_embed.projection.bias,
                       trained_patch_bias)
    assert not torch.equal(model.backbone.patch_embed.projection.weight,
                           trained_patch_weight)


def test_reinit_student_does_not_dump_the_init_table(make_dbot, monkeypatch):
    from mmengine.model import BaseModule
    dumps = []
    monkeypatch.setattr(BaseModule, '_dump_init_info',
                        lambda self, *a, **k: dumps.append(type(self)))
    model = make_dbot()
    built = len(dumps)
    assert built >= 1  # mmengine logs the table once, at build
    model.reinit_student(seed=3)
    assert len(dumps) == built
    assert '_dump_init_info' not in vars(model)


def test_state_dict_round_trip_restores_stage_and_teacher(make_dbot):
    model = make_dbot()
    _perturb(model)
    model.stage.add_(2)
    model.bootstrap_teacher(1)
    state = model.state_dict()
    assert {'stage', 'teacher.active_depth', 'teacher.cls_token'} <= set(
        state)
    restored = make_dbot()
    restored.load_state_dict(state)
    assert int(restored.stage) == 2 and restored.teacher.depth == 1
    _assert_teacher_equals_student(restored, depth=1)


def test_config_errors_name_the_keys(make_cfg):
    cfg = make_cfg()
    cfg['neck']['predict_dim'] = 48
    with pytest.raises(ValueError, match=r'embed_dims=32.*predict_dim=48'):
        MODELS.build(cfg)
    cfg = make_cfg()
    cfg['backbone']['img_size'] = 36
    with pytest.raises(ValueError, match=r'img_size=36.*patch_size=8'):
        MODELS.build(cfg)
    cfg = make_cfg()
    cfg['teacher']['img_size'] = 40
    with pytest.raises(ValueError, match='img_size'):
        MODELS.build(cfg)
