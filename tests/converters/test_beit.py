"""CLIP-teacher releases (official beit branch, BEiT layout) -> ViTDense.

timm's ``Beit`` has the official layout (q/v biases, per-block relative
position tables, layer scale, no absolute embedding); the converted model
must give the same outputs."""
import os.path as osp
import sys

import pytest
import torch

timm = pytest.importorskip('timm')
from mmpretrain.registry import MODELS  # noqa: E402

import dbot_mm  # noqa: E402,F401
from dbot_mm.models.converters import convert_beit  # noqa: E402
from dbot_mm.utils import safe_load  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools', 'model_converters'))


def _beit(randomize, **kwargs):
    from timm.models.beit import Beit
    cfg = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2,
               num_classes=10, use_abs_pos_emb=False, use_rel_pos_bias=True,
               init_values=0.1, global_pool='avg')
    cfg.update(kwargs)
    return randomize(Beit(**cfg))


def test_finetuned_clip_row_classifier(tmp_path, randomize):
    ref = _beit(randomize)
    src = str(tmp_path / '85.7_clip_base_finetune.pth')
    torch.save(dict(model=ref.state_dict()), src)
    dst = str(tmp_path / 'in1k.pth')
    import vit_finetuned_to_mmpretrain
    vit_finetuned_to_mmpretrain.main([src, dst, '--num-heads', '2'])

    ckpt = safe_load(dst)
    cfg = ckpt['meta']['dbot_mm']['model_cfg']
    assert cfg['backbone']['use_rel_pos_bias']
    model = MODELS.build(cfg)
    model.load_state_dict(ckpt['state_dict'], strict=True)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (model(x, mode='tensor') - ref(x)).abs().max() <= 1e-5


def test_pretrained_clip_row_backbone(tmp_path, randomize):
    """Pre-trained release: mask_token / lm_head dropped, trunk exact."""
    ref = _beit(randomize, num_classes=0, global_pool='token')
    state = dict(ref.state_dict())
    state['mask_token'] = torch.zeros(1, 1, 64)
    state['lm_head.weight'] = torch.zeros(512, 64)
    src = str(tmp_path / '85.7_clip_base_pre.pth')
    torch.save(dict(model=state), src)
    dst = str(tmp_path / 'backbone.pth')
    import dbot_official_to_mm
    dbot_official_to_mm.main([src, dst, '--backbone-only', '--num-heads',
                              '2'])
    with pytest.raises(SystemExit, match='symmetric'):
        dbot_official_to_mm.main([src, dst, '--num-heads', '2'])

    ckpt = safe_load(dst)
    backbone_cfg = dict(ckpt['meta']['dbot_mm']['model_cfg']['backbone'],
                        out_type='raw', final_norm=True)
    backbone = MODELS.build(backbone_cfg)
    state = {k[len('backbone.'):]: v for k, v in ckpt['state_dict'].items()}
    backbone.load_state_dict(state, strict=True)
    backbone.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = ref.forward_features(x)
        got = backbone(x)[0]
    assert (got - expected).abs().max() <= 1e-5


def test_shared_table_and_abs_pos(randomize):
    ref = _beit(randomize, use_abs_pos_emb=True, use_rel_pos_bias=False,
                use_shared_rel_pos_bias=True)
    state, report, cfg = convert_beit(ref.state_dict(), num_heads=2)
    assert not report.missing_keys and not report.unexpected_keys
    model = MODELS.build(cfg)
    model.load_state_dict(state, strict=True)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (model(x, mode='tensor') - ref(x)).abs().max() <= 1e-5
