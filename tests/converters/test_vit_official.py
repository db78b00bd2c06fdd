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
