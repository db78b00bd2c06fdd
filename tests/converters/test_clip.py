"""CLIP image towers (open_clip implementation, random weights, shrunk)
-> dbot_mm teacher: same token features."""
import os.path as osp
import sys

import pytest
import torch
from torch import nn

open_clip = pytest.importorskip('open_clip')
from mmpretrain.registry import MODELS  # noqa: E402
from open_clip.transformer import QuickGELU, VisionTransformer  # noqa: E402

import dbot_mm  # noqa: E402,F401
from dbot_mm.models.converters import (convert_clip_visual,  # noqa: E402
                                       extract_state_dict, load_source)
from dbot_mm.models.converters.clip import (CLIP_MEAN, CLIP_STD,  # noqa
                                            IMAGENET_MEAN, IMAGENET_STD)
from dbot_mm.utils import safe_load  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools', 'model_converters'))


def _tower(randomize, quick_gelu=True, seed=0):
    """ViT-B-16's tower design at width 64, 2 layers, 32 px."""
    vt = VisionTransformer(
        image_size=32, patch_size=8, width=64, layers=2, heads=2,
        mlp_ratio=4., output_dim=48, output_tokens=True,
        act_layer=QuickGELU if quick_gelu else nn.GELU)
    return randomize(vt, seed)


def _all_tokens(vt, x):
    """Every token after ln_post, cls first (what the teacher returns)."""
    with torch.no_grad():
        return vt.ln_post(vt.transformer(vt._embeds(x)))


def _convert_cli(tmp_path, vt, *extra):
    src = str(tmp_path / 'clip.pt')
    # a full CLIP state dict: image tower under visual.*, plus text parts
    state = {'visual.' + k: v for k, v in vt.state_dict().items()}
    state.update({'logit_scale': torch.tensor(4.6),
                  'positional_embedding': torch.zeros(77, 32)})
    torch.save(state, src)
    dst = str(tmp_path / 'teacher.pth')
    import clip_to_dbot_teacher
    clip_to_dbot_teacher.main([src, dst, '--num-heads', '2', *extra])
    return dst, safe_load(dst)['meta']['dbot_mm']['teacher_cfg']['config']


@pytest.mark.parametrize('source', ['openai', 'openclip'])
def test_teacher_tokens_match_open_clip(tmp_path, randomize, source):
    vt = _tower(randomize, quick_gelu=source == 'openai')
    dst, cfg = _convert_cli(tmp_path, vt, '--source', source)
    teacher = MODELS.build(dict(cfg, data_norm=None, teacher_norm=None))
    teacher.init_weights()
    x = torch.randn(2, 3, 32, 32)
    got = teacher(x)
    expected = _all_tokens(vt, x)
    assert got.shape == (2, 17, 64)
    assert (got - expected).abs().max() <= 1e-5
    pooled, tokens = vt(x)
    assert (got[:, 1:] - tokens).abs().max() <= 1e-5
    assert teacher.out_dims == 64 and teacher.num_patches == 16


def test_kept_projection_matches(tmp_path, randomize):
    vt = _tower(randomize)
    dst, cfg = _convert_cli(tmp_path, vt, '--keep-proj')
    teacher = MODELS.build(dict(cfg, data_norm=None, teacher_norm=None))
    teacher.init_weights()
    x = torch.randn(2, 3, 32, 32)
    got = teacher(x)
    pooled, tokens = vt(x)
    assert teacher.out_dims == 48
    assert (got[:, 0] - pooled).abs().max() <= 1e-5
    assert (got[:, 1:] - tokens @ vt.proj).abs().max() <= 1e-5


def test_imagenet_input_is_renormalised_to_clip(tmp_path, randomize):
    vt = _tower(randomize)
    dst, cfg = _convert_cli(tmp_path, vt)
    teacher = MODELS.build(cfg)  # data_norm / teacher_norm as converted
    teacher.init_weights()
    raw = torch.rand(2, 3, 32, 32) * 255
    mean_in, std_in = (torch.tensor(v).view(1, 3, 1, 1)
                       for v in (IMAGENET_MEAN, IMAGENET_STD))
    mean_t, std_t = (torch.tensor(v).view(1, 3, 1, 1)
                     for v in (CLIP_MEAN, CLIP_STD))
    got = teacher((raw - mean_in) / std_in)
    expected = _all_tokens(vt, (raw - mean_t) / std_t)
    assert (got - expected).abs().max() <= 1e-4


def test_other_patch_size_lands_on_the_student_grid(tmp_path, randomize):
    """CLIP-L/14 for a /16 student: resize the input, or the features."""
    vt = _tower(randomize)  # 4x4 grid at 32 px
    dst, cfg = _convert_cli(tmp_path, vt, '--img-size', '24')
    small = MODELS.build(dict(cfg, data_norm=None, teacher_norm=None))
    small.init_weights()  # pos_embed resized 4x4 -> 3x3
    assert small.num_patches == 9
    assert small(torch.randn(1, 3, 32, 32)).shape == (1, 10, 64)

    resampled = MODELS.build(dict(cfg, img_size=32, out_size=2,
                                  data_norm=None, teacher_norm=None))
    resampled.init_weights()
    x = torch.randn(1, 3, 32, 32)
    out = resampled(x)
    assert resampled.num_patches == 4 and out.shape == (1, 5, 64)
    full = _all_tokens(vt, x)
    assert (out[:, 0] - full[:, 0]).abs().max() <= 1e-5
    # bilinear 4x4 -> 2x2 without corners is the mean of each 2x2 block
    block = full[:, 1:].reshape(1, 2, 2, 2, 2, 64).permute(0, 1, 3, 2, 4, 5)
    assert (out[:, 1:] - block.reshape(1, 4, 4, 64).mean(2)).abs().max() \
        <= 1e-5


def test_wrong_activation_is_refused(tmp_path, randomize):
    vt = _tower(randomize, quick_gelu=True)
    dst, cfg = _convert_cli(tmp_path, vt)
    cfg = dict(cfg, layer_cfgs=dict(act_cfg=dict(type='GELU')))
    teacher = MODELS.build(cfg)
    with pytest.raises(ValueError, match='act'):
        teacher.init_weights()


@pytest.mark.filterwarnings('ignore::FutureWarning',
                            'ignore::torch.jit.TracerWarning')
def test_torchscript_release_is_read(tmp_path, randomize):
    """OpenAI ships TorchScript archives; their state dict is used."""
    vt = _tower(randomize)
    vt.output_tokens = False
    path = str(tmp_path / 'ViT-B-16.pt')
    torch.jit.trace(vt, torch.randn(1, 3, 32, 32),
                    check_trace=False).save(path)
    state = extract_state_dict(load_source(path))
    out, report, _ = convert_clip_visual(state, num_heads=2)
    assert not report.missing_keys and not report.unexpected_keys
    assert report.unused_source_keys == ['proj']


def test_missing_block_tensor_is_an_error(tmp_path, randomize):
    vt = _tower(randomize)
    dst, cfg = _convert_cli(tmp_path, vt)
    state = safe_load(dst)
    del state['state_dict']['backbone.layers.1.ln2.weight']
    torch.save(state, dst)
    teacher = MODELS.build(cfg)
    with pytest.raises(KeyError, match='layers.1.ln2.weight'):
        teacher.init_weights()
