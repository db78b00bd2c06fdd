"""ViTDense: multi-scale outputs, any input size, rel-pos / layer scale,
activation checkpointing, frozen stages and reported pretrained loading."""
import pytest
import torch

import dbot_mm  # noqa: F401
from dbot_mm.models.backbones.vit_dense import RelPosAttention, ViTDense
from dbot_mm.utils.ckpt_load import PretrainedLoadError
from transfer_tiny import TINY_ARCH, TINY_DEPTH, make_dbot_checkpoint


def _vit(**kwargs):
    kwargs.setdefault('arch', dict(TINY_ARCH))
    kwargs.setdefault('img_size', 64)
    kwargs.setdefault('patch_size', 16)
    torch.manual_seed(0)
    model = ViTDense(**kwargs)
    model.init_weights()
    return model


def test_four_scales_for_fpn_at_any_input_size():
    model = _vit(out_indices=(0, 1, 2, 3), out_scales=(4, 2, 1, 0.5)).eval()
    for h, w in [(64, 64), (96, 160), (128, 64)]:
        outs = model(torch.randn(1, 3, h, w))
        assert [o.shape[-2:] for o in outs] == [
            (h // s, w // s) for s in (4, 8, 16, 32)]
        assert all(o.shape[1] == TINY_ARCH['embed_dims'] for o in outs)


def test_without_adapter_returns_patch_maps_and_cls_outputs():
    dense = _vit(out_indices=(1, 3)).eval()
    assert [o.shape for o in dense(torch.randn(2, 3, 48, 80))] == [
        (2, 32, 3, 5)] * 2
    pooled = _vit(out_type='avg_featmap').eval()
    assert pooled(torch.randn(2, 3, 64, 64))[0].shape == (2, 32)
    assert not hasattr(dense, 'adapter')


def test_position_embedding_is_resized_not_cropped():
    model = _vit(out_indices=(3, )).eval()
    x = torch.randn(1, 3, 64, 64)
    ref = model(x)[0]
    with torch.no_grad():  # a 2x larger image sees an interpolated table
        big = model(torch.nn.functional.interpolate(x, scale_factor=2.))[0]
    assert big.shape[-2:] == (8, 8) and torch.isfinite(big).all()
    assert ref.shape[-2:] == (4, 4)


def test_zero_rel_pos_and_unit_layer_scale_start_as_the_plain_vit():
    """Official seg recipe: the new parts start as the identity, so the
    pretrained encoder's function is unchanged at step 0, at any size."""
    plain = _vit(out_indices=(0, 3)).eval()
    seg = _vit(out_indices=(0, 3), use_rel_pos_bias=True,
               layer_scale_init_value=1.0).eval()
    missing, unexpected = seg.load_state_dict(plain.state_dict(),
                                              strict=False)
    assert not unexpected
    assert all('relative_position' in k or '.gamma' in k for k in missing)
    assert isinstance(seg.layers[0].attn, RelPosAttention)
    for size in [(64, 64), (64, 112)]:  # 4x4 window, then 4x7
        x = torch.randn(2, 3, *size)
        for a, b in zip(plain(x), seg(x)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_rel_pos_bias_trains_and_resizes_for_other_grids():
    model = _vit(out_indices=(3, ), use_rel_pos_bias=True)
    model.train()
    model(torch.randn(1, 3, 64, 96))[0].square().mean().backward()
    table = model.layers[1].attn.rel_pos_bias.relative_position_bias_table
    assert table.shape == (7 * 7 + 3, 2) and table.grad.abs().sum() > 0
    # a table trained at 4x4 loads into a model built for 8x8 (128 px)
    state = {k: v for k, v in model.state_dict().items()}
    big = _vit(out_indices=(3, ), use_rel_pos_bias=True, img_size=128)
    big.load_state_dict(state)
    new = big.layers[1].attn.rel_pos_bias.relative_position_bias_table
    assert new.shape == (15 * 15 + 3, 2)
    torch.testing.assert_close(new[-3:], table[-3:])
    assert not any('relative_position_index' in k for k in state)
    # the replaced attention keeps the stochastic-depth rule of its block
    deep = _vit(use_rel_pos_bias=True, drop_path_rate=0.3)
    rates = [float(lay.attn.out_drop.drop_prob) for lay in deep.layers]
    assert rates == pytest.approx([0., 0.1, 0.2, 0.3])
    assert rates == [float(lay.ffn.dropout_layer.drop_prob)
                     for lay in deep.layers]


def test_activation_checkpointing_matches_plain_forward_and_grads():
    kw = dict(out_indices=(1, 3), out_scales=(2, 1), drop_path_rate=0.)
    plain, ckpt = _vit(**kw), _vit(with_cp=True, **kw)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for model in (plain, ckpt):
        model.train()
        loss = sum(o.square().mean() for o in model(x))
        loss.backward()
        grads.append(model.layers[0].attn.qkv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_frozen_stages_stay_frozen_and_in_eval_mode():
    model = _vit(frozen_stages=TINY_DEPTH, out_type='cls_token',
                 final_norm=True, drop_path_rate=0.1)
    model.train()
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.layers[0].training and not model.patch_embed.training
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model(x)[0], model(x)[0])  # no drop path


def _dense_from(ckpt, **kwargs):
    return _vit(
        out_indices=(0, 1, 2, 3),
        out_scales=(4, 2, 1, 0.5),
        init_cfg=dict(type='Pretrained', checkpoint=ckpt,
                      prefix='backbone.'),
        **kwargs)


def test_dbot_checkpoint_loads_with_a_complete_report(tmp_path):
    ckpt = str(tmp_path / 'dbot.pth')
    enc = make_dbot_checkpoint(ckpt, img_size=32)  # 2x2 grid -> 4x4 here
    model = _dense_from(ckpt, use_rel_pos_bias=True,
                        layer_scale_init_value=1.0)
    report = model.pretrained_report
    assert report['missing'] == []
    assert report['unexpected'] == ['ln1.bias', 'ln1.weight']
    assert all(k.startswith('adapter.') or 'relative_position' in k
               or '.gamma' in k for k in report['new'])
    assert len(report['loaded']) == len(enc) - 2
    state = model.state_dict()
    torch.testing.assert_close(state['layers.3.ffn.layers.1.weight'],
                               enc['layers.3.ffn.layers.1.weight'])
    torch.testing.assert_close(state['pos_embed'][:, 0],
                               enc['pos_embed'][:, 0])  # cls slot kept
    assert state['pos_embed'].shape == (1, 17, 32)
    # the new parts keep their start values
    assert model.layers[0].attn.gamma1.weight.eq(1).all()
    assert not model.layers[0].attn.rel_pos_bias.\
        relative_position_bias_table.any()


def test_bare_encoder_state_dict_loads_without_prefix(tmp_path):
    ckpt = str(tmp_path / 'dbot.pth')
    make_dbot_checkpoint(ckpt)
    sd = torch.load(ckpt, weights_only=True)['state_dict']
    bare = {k[len('backbone.'):]: v for k, v in sd.items()
            if k.startswith('backbone.')}
    torch.save(bare, tmp_path / 'bare.pth')
    model = _vit(init_cfg=dict(type='Pretrained',
                               checkpoint=str(tmp_path / 'bare.pth')))
    assert model.pretrained_report['missing'] == []
    # prefix=None on a full checkpoint finds backbone. by itself
    model = _vit(init_cfg=dict(type='Pretrained', checkpoint=ckpt))
    assert model.pretrained_report['missing'] == []


def test_wrong_prefix_or_arch_fails_loudly(tmp_path):
    ckpt = str(tmp_path / 'dbot.pth')
    make_dbot_checkpoint(ckpt)
    with pytest.raises(PretrainedLoadError,
                       match=r'dbot\.pth: no key starts with prefix "encoder\."'):
        _vit(init_cfg=dict(type='Pretrained', checkpoint=ckpt,
                           prefix='encoder.'))
    deeper = dict(TINY_ARCH, num_layers=6)
    with pytest.raises(PretrainedLoadError, match='layers.5'):
        _vit(arch=deeper, init_cfg=dict(type='Pretrained', checkpoint=ckpt,
                                         prefix='backbone.'))
    relaxed = _vit(arch=deeper, strict_pretrained=False,
                   init_cfg=dict(type='Pretrained', checkpoint=ckpt,
                                 prefix='backbone.'))
    assert any(k.startswith('layers.4.') for k in
               relaxed.pretrained_report['missing'])


def test_registered_for_all_three_toolboxes():
    from mmpretrain.registry import MODELS as PRETRAIN
    assert PRETRAIN.get('ViTDense') is ViTDense
    for scope in ('mmdet', 'mmseg'):
        registry = pytest.importorskip(f'{scope}.registry')
        assert registry.MODELS.module_dict['ViTDense'] is ViTDense


def test_checkpoint_of_the_real_dbot_model_loads(tmp_path):
    """The state dict of dbot_mm's own DBOT (demo pretraining config, with
    teacher, decoder and head) loads into ViTDense of the same arch file."""
    import os.path as osp

    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    from transfer_tiny import CONFIG_DIR
    demo = osp.join(CONFIG_DIR, 'pretrain', 'dbot_demo_fashion-mnist.py')
    if not osp.isfile(demo):
        pytest.skip('no demo pretraining config in this checkout')
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    dbot = MODELS.build(Config.fromfile(demo).model)
    dbot.init_weights()
    ckpt = str(tmp_path / 'epoch_9.pth')
    torch.save(dict(meta=dict(epoch=9), state_dict=dbot.state_dict()), ckpt)

    arch = Config.fromfile(
        osp.join(CONFIG_DIR, '_base_', 'models', 'vit-tiny-p4.py'))
    depth = arch.model.backbone.arch.num_layers
    model = _vit(
        **arch.model.backbone,
        out_indices=(depth // 2, depth - 1),
        out_scales=(2, 1),
        use_rel_pos_bias=True,
        init_cfg=dict(type='Pretrained', checkpoint=ckpt,
                      prefix='backbone.'))
    assert model.pretrained_report['missing'] == []
    student = dbot.backbone.state_dict()
    for key in model.pretrained_report['loaded']:
        torch.testing.assert_close(model.state_dict()[key], student[key])
    dims = arch.model.backbone.arch.embed_dims
    assert model(torch.randn(1, 3, 32, 32))[0].shape == (1, dims, 16, 16)

    # ... and so does the published backbone (tools/model_converters)
    try:
        from dbot_mm.models.converters import publish_backbone
    except ImportError:
        return
    published, _ = publish_backbone(ckpt, str(tmp_path / 'dbot_tiny.pth'))
    again = _vit(
        **arch.model.backbone,
        init_cfg=dict(type='Pretrained', checkpoint=published,
                      prefix='backbone.'))
    assert again.pretrained_report['missing'] == []
    assert again.pretrained_report['loaded'] == \
        model.pretrained_report['loaded']


def test_import_without_mmdet_and_mmseg():
    """Only mmpretrain is required: the transfer parts register there."""
    import subprocess
    import sys

    from transfer_tiny import REPO
    code = ('import sys; sys.modules["mmdet"] = None; '
            'sys.modules["mmseg"] = None; import dbot_mm; '
            'from mmpretrain.registry import MODELS, '
            'OPTIM_WRAPPER_CONSTRUCTORS as C; '
            'assert MODELS.get("ViTDense") is not None; '
            'assert C.get("LayerDecayOptimWrapperConstructor") is not None')
    res = subprocess.run([sys.executable, '-c', code], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
