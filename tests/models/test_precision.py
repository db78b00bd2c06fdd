"""Speed changes must not change the numbers; bf16 must stay close to fp32.

* fp32: the optimised step (attention dispatcher, block runner, teacher depth
  cache, ``teacher_forward``) is compared bit for bit with the forward as it
  was written before them: mmpretrain's blocks with their own fused SDPA,
  a plain loop, and the teacher reading its depth buffer.
* activation checkpointing recomputes with the same drop-path draws.
* bf16 (``AutocastOptimWrapper``): loss within 1e-2 relative of fp32 on the
  same weights and mask, gradients pointing the same way.
No timings here: speed is the benchmark's business
(``tools/benchmark/train_step.py``).
"""
import copy
from contextlib import contextmanager

import pytest
import torch
from mmpretrain.models.utils import MultiheadAttention
from mmpretrain.models.utils import attention as mmpretrain_attention
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS, OPTIM_WRAPPERS

from dbot_tiny import ARCH, IMG, NUM_PATCHES, PATCH


def _noise(seed, batch=4):
    return torch.rand(batch, NUM_PATCHES,
                      generator=torch.Generator().manual_seed(seed))


def _images(seed, batch=4):
    return torch.randn(batch, 3, IMG, IMG,
                       generator=torch.Generator().manual_seed(seed))


@contextmanager
def _mmpretrain_attention(model):
    """Put mmpretrain's own SDPA back into every attention layer."""
    layers = [m for m in model.modules() if isinstance(m, MultiheadAttention)]
    saved = [m.scaled_dot_product_attention for m in layers]
    for m in layers:
        m.scaled_dot_product_attention = \
            mmpretrain_attention.scaled_dot_product_attention
    try:
        yield
    finally:
        for m, fn in zip(layers, saved):
            m.scaled_dot_product_attention = fn


def _reference_loss(model, images, noise):
    """DBOT.loss as it was before the speed work, written out."""
    b, n, t = model.backbone, model.neck, model.teacher
    B = images.shape[0]
    with _mmpretrain_attention(model):
        x = b.patch_embed(images)[0] + b.pos_embed[:, 1:, :]
        x, mask, ids_restore = b.random_masking(x, b.mask_ratio, noise)
        cls = (b.cls_token + b.pos_embed[:, :1, :]).expand(B, -1, -1)
        x = torch.cat([cls, x], dim=1)
        for layer in b.layers:
            x = layer(x)
        latent = b.ln1(x)

        x = n.decoder_embed(latent)
        C = x.shape[-1]
        visible = x[:, 1:]
        tokens = torch.cat([
            visible,
            n.mask_token.expand(B, ids_restore.shape[1] - visible.shape[1], C)
        ], dim=1)
        tokens = torch.gather(tokens, 1,
                              ids_restore.unsqueeze(-1).expand(-1, -1, C))
        x = torch.cat([x[:, :1], tokens], dim=1) + n.decoder_pos_embed
        for block in n.decoder_blocks:
            x = block(x)
        pred = n.decoder_pred(n.decoder_norm(x))

        with torch.no_grad():
            y, grid = t.patch_embed(images)
            y = torch.cat([t.cls_token.expand(B, -1, -1), y], dim=1)
            y = y + resize_pos_embed(t.pos_embed, t.patch_resolution, grid,
                                     mode=t.interpolate_mode,
                                     num_extra_tokens=t.num_extra_tokens)
            for layer in t.layers[:int(t.active_depth)]:
                y = layer(y)
    counted = torch.cat([mask.new_ones(B, 1), mask], dim=1)
    return model.head.loss(pred, y, counted)


def _grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {k: p.grad.clone() for k, p in model.named_parameters()
            if p.grad is not None}


def _perturbed(make_dbot, **overrides):
    """A model whose student and teacher differ (as after some training)."""
    model = make_dbot(**overrides)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(('backbone.', 'neck.')) and p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.train()


def _with_drop_path(make_dbot, rate):
    def build(**overrides):
        model = make_dbot(**overrides)
        for m in model.modules():  # DropPath of mmcv / mmpretrain blocks
            if hasattr(m, 'drop_prob'):
                m.drop_prob = rate
        return model
    return build


@pytest.mark.parametrize('drop_path', [0., 0.3])
@pytest.mark.parametrize('depth', [2, 1, 0])
def test_fp32_loss_and_grads_bit_identical_to_reference(make_dbot, depth,
                                                        drop_path):
    """Also with drop path: the teacher (now run first) draws no random
    numbers, so the student's drop-path masks are the same draws."""
    model = _perturbed(_with_drop_path(make_dbot, drop_path))
    model.teacher.set_depth(depth)
    images, noise = _images(0), _noise(0)

    torch.manual_seed(5)
    ref_loss = _reference_loss(model, images, noise)
    ref = _grads(model, ref_loss)
    torch.manual_seed(5)
    loss = model.loss(images, None, noise=noise)['loss']
    new = _grads(model, loss)

    assert torch.equal(loss, ref_loss)
    assert ref.keys() == new.keys() and ref
    for k in ref:
        assert torch.equal(new[k], ref[k]), k


def test_activation_checkpointing_changes_nothing(make_cfg):
    """Recompute replays the drop-path masks (RNG state restored)."""
    cfg = make_cfg()
    cfg['backbone']['drop_path_rate'] = 0.3
    cfg['neck']['drop_path_rate'] = 0.3
    cp_cfg = copy.deepcopy(cfg)
    cp_cfg['backbone']['with_cp'] = True
    cp_cfg['neck']['with_cp'] = True
    plain, cp = MODELS.build(cfg), MODELS.build(cp_cfg)
    plain.init_weights()
    cp.load_state_dict(plain.state_dict())
    images, noise = _images(1), _noise(1)

    results = []
    for model in (plain, cp):
        model.train()
        torch.manual_seed(3)
        loss = model.loss(images, None, noise=noise)['loss']
        results.append((loss, _grads(model, loss)))
    (l0, g0), (l1, g1) = results
    assert torch.equal(l0, l1)
    assert g0.keys() == g1.keys()
    for k in g0:
        assert torch.equal(g0[k], g1[k]), k


def _bf16_wrapper(model):
    return OPTIM_WRAPPERS.build(
        dict(type='AutocastOptimWrapper', dtype='bfloat16',
             optimizer=torch.optim.AdamW(
                 [p for p in model.parameters() if p.requires_grad])))


@pytest.mark.parametrize('bf16_teacher', [True, False])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_bf16_loss_close_to_fp32(make_dbot, seed, bf16_teacher):
    model = _perturbed(make_dbot, bf16_teacher=bf16_teacher)
    images, noise = _images(seed), _noise(seed)
    loss32 = model.loss(images, None, noise=noise)['loss']
    g32 = _grads(model, loss32)

    wrapper = _bf16_wrapper(model)
    with wrapper.optim_context(model):
        loss16 = model.loss(images, None, noise=noise)['loss']
    assert loss16.dtype == torch.float32  # the head works in fp32
    g16 = _grads(model, loss16)

    rel = abs(loss16.item() - loss32.item()) / abs(loss32.item())
    assert rel < 1e-2, rel
    assert g32.keys() == g16.keys()
    for k in g32:
        if g32[k].norm() > 0:
            cos = torch.nn.functional.cosine_similarity(
                g16[k].flatten(), g32[k].flatten(), dim=0)
            assert cos > 0.99, (k, cos.item())


def test_bf16_teacher_runs_in_bf16_and_leaves_weights_fp32(make_dbot):
    model = make_dbot()
    images = _images(0)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        target = model.teacher_forward(images)
    assert target.dtype == torch.bfloat16
    assert not target.requires_grad
    assert all(p.dtype == torch.float32 for p in model.teacher.parameters())
    fp32 = model.teacher_forward(images)
    assert fp32.dtype == torch.float32
    torch.testing.assert_close(target.float(), fp32, rtol=0.05, atol=0.05)


def test_bf16_teacher_follows_depth_and_bootstrap(make_dbot):
    """Weights are cast per step, so a bootstrap is seen at once."""
    model = _perturbed(make_dbot)
    images = _images(2)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        before = model.teacher_forward(images)
        model.bootstrap_teacher(1)
        after = model.teacher_forward(images)
    assert not torch.equal(before, after)
    expected = model.teacher_forward(images)  # fp32, depth 1
    torch.testing.assert_close(after.float(), expected, rtol=0.05,
                               atol=0.05)


def test_teacher_forward_never_reads_the_depth_buffer(monkeypatch, make_dbot):
    """``int(active_depth)`` would be a host sync per step on a GPU."""
    model = make_dbot()
    model.teacher.set_depth(1)
    buffer = model.teacher.active_depth

    def guard(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            if self is buffer:
                raise AssertionError(f'active_depth.{name}() in forward')
            return original(self, *args, **kwargs)

        return read

    for name in ('__int__', '__index__', '__bool__', 'item', 'tolist'):
        monkeypatch.setattr(torch.Tensor, name, guard(name))
    images = _images(0)
    model.teacher(images)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        model.loss(images, None, noise=_noise(0))


def test_depth_cache_follows_checkpoints():
    teacher = MODELS.build(
        dict(type='ViTTeacher', arch=copy.deepcopy(ARCH), img_size=IMG,
             patch_size=PATCH, depth=2))
    state = teacher.state_dict()
    state['active_depth'] = torch.tensor(1)
    teacher.load_state_dict(state)
    assert teacher.depth == 1
    images = _images(0)
    shallow = MODELS.build(
        dict(type='ViTTeacher', arch=copy.deepcopy(ARCH), img_size=IMG,
             patch_size=PATCH, depth=1))
    shallow.load_state_dict(teacher.state_dict())
    assert torch.equal(teacher(images), shallow(images))
    teacher.set_depth(0)
    assert int(teacher.active_depth) == 0 and teacher.depth == 0


def test_autocast_optim_wrapper_on_cpu():
    """mmengine's AmpOptimWrapper asserts a GPU; this one runs bf16 on CPU
    without a loss scaler, and keeps the checkpoint layout."""
    model = torch.nn.Linear(8, 8)
    wrapper = OPTIM_WRAPPERS.build(
        dict(type='AutocastOptimWrapper',
             optimizer=torch.optim.AdamW(model.parameters(), lr=0.1)))
    assert wrapper.cast_dtype == torch.bfloat16
    assert not wrapper.loss_scaler.is_enabled()
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(torch.randn(4, 8))
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().pow(2).mean())
    assert not torch.equal(model.weight, before)
    state = wrapper.state_dict()
    assert 'loss_scaler' in state
    wrapper.load_state_dict(state)
    if not torch.cuda.is_available():
        with pytest.raises(AssertionError):
            OPTIM_WRAPPERS.build(
                dict(type='AutocastOptimWrapper', dtype='float16',
                     optimizer=torch.optim.AdamW(model.parameters())))
