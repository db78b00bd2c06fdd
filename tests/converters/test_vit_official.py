"""Official timm-layout ViTs -> mmpretrain / dbot_mm names, checked on
features: a converter that misplaces one tensor changes the output."""
import argparse
import os.path as osp
import sys

import pytest
import torch

timm = pytest.importorskip('timm')
from mmpretrain.registry import MODELS  # noqa: E402

import dbot_mm  # noqa: E402,F401
from dbot_mm.models.converters import (ConversionError,  # noqa: E402
                                       convert_official_finetuned,
                                       convert_official_pretrain,
                                       extract_state_dict, load_source)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools', 'model_converters'))


def _timm_vit(**kwargs):
    from timm.models.vision_transformer import VisionTransformer
    cfg = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2,
               num_classes=0, norm_layer=None)
    cfg.update(kwargs)
    from functools import partial
    cfg['norm_layer'] = partial(torch.nn.LayerNorm, eps=1e-6)
    return VisionTransformer(**cfg)


def _save_official(model, path):
    # what misc.save_model writes: weights plus the argparse Namespace
    torch.save(dict(model=model.state_dict(), epoch=1599,
                    args=argparse.Namespace(model='mae_vit_base_patch16',
                                            blr=1.5e-4, depth=[2, 2])), path)


def test_backbone_features_match_timm(tmp_path, randomize):
    ref = randomize(_timm_vit())
    src = str(tmp_path / 'checkpoint-1600.pth')
    _save_official(ref, src)
    dst = str(tmp_path / 'backbone.pth')

    import dbot_official_to_mm
    dbot_official_to_mm.main([src, dst, '--backbone-only', '--num-heads',
                              '2'])

    backbone = MODELS.build(
        dict(type='VisionTransformer',
             arch=dict(embed_dims=64, num_layers=2, num_heads=2,
                       feedforward_channels=256),
             img_size=32, patch_size=8, out_type='raw',
             init_cfg=dict(type='Pretrained', checkpoint=dst,
                           prefix='backbone.')))
    backbone.init_weights()
    backbone.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = ref.forward_features(x)
        got = backbone(x)[0]
    assert (got - expected).abs().max() <= 1e-5


def test_finetuned_classifier_logits_match(randomize):
    ref = randomize(_timm_vit(global_pool='avg', fc_norm=True,
                              num_classes=10))
    state, report, cfg = convert_official_finetuned(ref.state_dict(),
                                                    num_heads=2)
    assert not report.missing_keys and not report.unexpected_keys
    assert cfg['backbone']['out_type'] == 'avg_featmap'
    model = MODELS.build(cfg).eval()
    model.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got = model(x, mode='tensor')
        expected = ref(x)
    assert (got - expected).abs().max() <= 1e-5


def test_cls_token_classifier(randomize):
    ref = randomize(_timm_vit(global_pool='token', num_classes=5))
    state, _, cfg = convert_official_finetuned(
        ref.state_dict(), num_heads=2, head_type='VisionTransformerClsHead')
    assert 'head.layers.head.weight' in state
    model = MODELS.build(cfg).eval()
    model.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert (model(x, mode='tensor') - ref(x)).abs().max() <= 1e-5


def test_shape_mismatch_names_the_key(randomize):
    state = dict(randomize(_timm_vit()).state_dict())
    state['blocks.1.mlp.fc1.weight'] = torch.zeros(128, 64)
    with pytest.raises(ConversionError, match='layers.1.ffn.layers.0.0'):
        convert_official_pretrain(state, backbone_only=True, num_heads=2)


def test_unknown_and_missing_keys_are_reported(randomize):
    state = dict(randomize(_timm_vit()).state_dict())
    state['dist_token'] = torch.zeros(1, 1, 64)
    del state['norm.weight']
    _, report, _ = convert_official_pretrain(state, backbone_only=True,
                                             num_heads=2)
    assert 'dist_token' in report.unused_source_keys
    assert 'backbone.ln1.weight' in report.missing_keys


def test_namespace_is_the_only_extra_global(tmp_path):
    """Official files load safely; other pickled objects stay refused."""
    ok = str(tmp_path / 'ok.pth')
    torch.save(dict(model=dict(w=torch.zeros(1)),
                    args=argparse.Namespace(a=1)), ok)
    assert list(extract_state_dict(load_source(ok))) == ['w']

    class Evil:
        def __reduce__(self):
            return (print, ('pwned', ))

    bad = str(tmp_path / 'bad.pth')
    torch.save(dict(model=dict(w=torch.zeros(1)), x=Evil()), bad)
    from dbot_mm.utils import UnsafeCheckpointError
    with pytest.raises(UnsafeCheckpointError):
        load_source(bad)


def test_finetuned_file_runs_in_the_cls_config(tmp_path, randomize):
    """The converted file is what configs/cls/*dbot-ft* build (shrunk)."""
    from mmengine.config import Config
    cfg_file = osp.join(ROOT, 'configs', 'cls',
                        'vit-base-p16_dbot-ft_8xb128-coslr-100e_in1k.py')
    if not osp.exists(cfg_file):
        pytest.skip('fine-tuning config not in the tree')
    ref = randomize(_timm_vit(global_pool='avg', fc_norm=True,
                              num_classes=10))
    src = str(tmp_path / 'finetune.pth')
    _save_official(ref, src)
    dst = str(tmp_path / 'in1k.pth')
    import vit_finetuned_to_mmpretrain
    vit_finetuned_to_mmpretrain.main([src, dst, '--num-heads', '2'])

    model_cfg = Config.fromfile(cfg_file).model
    model_cfg.backbone.update(
        arch=dict(embed_dims=64, num_layers=2, num_heads=2,
                  feedforward_channels=256),
        img_size=32, patch_size=8, init_cfg=None)
    model_cfg.head.update(in_channels=64, num_classes=10)
    model_cfg.pop('data_preprocessor', None)
    model = MODELS.build(model_cfg)
    from dbot_mm.utils import safe_load
    model.load_state_dict(safe_load(dst)['state_dict'], strict=True)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (model(x, mode='tensor') - ref(x)).abs().max() <= 1e-5


def _official_sdae_state(randomize):
    """What SdAE's util/misc.save_model writes, built from timm modules with
    the official names: the MAE student (decoder_pred predicts the 64
    encoder channels) under ``model``, the EMA teacher (timm ViT, head
    deleted, final ``norm`` kept) under ``model_teacher``."""
    from timm.models.vision_transformer import Block
    student = dict(randomize(_timm_vit(), seed=1).state_dict())
    decoder = torch.nn.ModuleDict(dict(
        decoder_embed=torch.nn.Linear(64, 32),
        decoder_blocks=torch.nn.ModuleList([Block(32, 2, 4., qkv_bias=True)]),
        decoder_norm=torch.nn.LayerNorm(32, eps=1e-6),
        decoder_pred=torch.nn.Linear(32, 64)))
    student.update(randomize(decoder, seed=2).state_dict())
    student['mask_token'] = torch.randn(1, 1, 32)
    student['decoder_pos_embed'] = torch.randn(1, 17, 32)
    teacher = randomize(_timm_vit(), seed=3)
    return student, teacher


def test_official_sdae_checkpoint_continues_in_the_sdae_config(
        tmp_path, randomize):
    from mmengine.config import Config
    from dbot_mm.utils import safe_load
    student, teacher = _official_sdae_state(randomize)
    src = str(tmp_path / 'checkpoint-299.pth')
    torch.save(dict(model=student, model_teacher=teacher.state_dict(),
                    optimizer=dict(state={}, param_groups=[]), epoch=299,
                    scaler=dict(scale=65536.),
                    args=argparse.Namespace(model='mae_vit_base_patch16',
                                            shrink_num=147, ncrop_loss=3)),
               src)
    dst = str(tmp_path / 'sdae.pth')
    import dbot_official_to_mm
    dbot_official_to_mm.main([src, dst, '--num-heads', '2'])
    state = safe_load(dst)['state_dict']
    # the teacher keeps its final norm (SdAE applies it), as every tensor
    assert torch.equal(state['teacher.ln1.weight'],
                       teacher.state_dict()['norm.weight'])
    assert torch.equal(state['backbone.ln1.weight'], student['norm.weight'])
    assert torch.equal(state['neck.decoder_pred.weight'],
                       student['decoder_pred.weight'])

    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain',
                                   'sdae_vitb.py')).model
    arch = dict(embed_dims=64, num_layers=2, num_heads=2,
                feedforward_channels=256)
    cfg.backbone.update(arch=arch, img_size=32, patch_size=8)
    cfg.neck.update(decoder_embed_dim=32, decoder_depth=1,
                    decoder_num_heads=2)
    cfg.teacher.update(shrink_num=12, num_folds=3)  # 12 of 16 hidden
    model = MODELS.build(cfg)
    result = model.load_state_dict(state, strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys == ['stage']  # DBOT's, not in the source
    model.eval()

    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # the teacher on the whole image: official forward_features (blocks
        # and final norm) without the cls token
        model.teacher.shrink_num = None
        got = model.teacher(x)
        expected = teacher.forward_features(x)[:, 1:]
        assert (got - expected).abs().max() <= 1e-5
        ref_student = randomize(_timm_vit(), seed=1)
        got = model.backbone(x, mask=None)[0]
        assert (got - ref_student.forward_features(x)).abs().max() <= 1e-5
    # and the moving average runs on the converted pair
    before = model.teacher.ln1.weight.clone()
    model.ema_update_teacher(0.96)
    torch.testing.assert_close(
        model.teacher.ln1.weight,
        before * 0.96 + model.backbone.ln1.weight * 0.04)


def test_sdae_checkpoint_refuses_a_second_teacher(tmp_path, randomize):
    student, teacher = _official_sdae_state(randomize)
    src = str(tmp_path / 'checkpoint-299.pth')
    torch.save(dict(model=student, model_teacher=teacher.state_dict()), src)
    import dbot_official_to_mm
    with pytest.raises(SystemExit, match='model_teacher'):
        dbot_official_to_mm.main([src, str(tmp_path / 'o.pth'), '--teacher',
                                  src])
