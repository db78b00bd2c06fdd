"""CLIP-teacher rows -> COCO / ADE20K: the symmetric student's weights flow.

``DBOTSymmetric`` (dbot_vit{b,l}_clip-*.py, shrunk) saves a training
checkpoint, ``publish_model.py`` keeps ``backbone.*``, and the CLIP-row det /
seg configs (shrunk like test_transfer_configs.py does) load it with no
missing key: relative position tables and layer scales equal the
checkpoint's, and the backbone computes DBOTSymmetricViT's encoder features.
The official release (BEiT layout, timm's ``Beit`` with a shared table as
the stand-in) goes through ``dbot_official_to_mm.py`` the same way.
"""
import copy
import importlib
import os.path as osp
import sys
from unittest import mock

import pytest
import torch
from mmengine.config import Config

from transfer_tiny import (REPO, TINY_ARCH, TINY_DEPTH, load_config,
                           make_dbot_checkpoint, needs_ops, shrink)

sys.path.insert(0, osp.join(REPO, 'tools', 'model_converters'))

DET_B = ('det/cascade-mask-rcnn_dbot-clip-b16-vit-base-p16_fpn_4conv1fc-'
         'giou_amp-ms-crop-1x_coco.py')
DET_L = ('det/cascade-mask-rcnn_dbot-clip-l14-vit-large-p16_fpn_4conv1fc-'
         'giou_amp-ms-crop-1x_coco.py')
SEG_B = ('seg/upernet_dbot-clip-b16-vit-base-p16_8xb2-amp-160k_ade20k-'
         '512x512.py')
SEG_L = ('seg/upernet_dbot-clip-l14-vit-large-p16_8xb2-amp-160k_ade20k-'
         '512x512.py')
ASYM = {  # CLIP-row config -> the asymmetric row's config it composes from
    DET_B: DET_B.replace('dbot-clip-b16-vit', 'dbot-vit'),
    DET_L: DET_L.replace('dbot-clip-l14-vit', 'dbot-vit'),
    SEG_B: SEG_B.replace('dbot-clip-b16-vit', 'dbot-vit'),
    SEG_L: SEG_L.replace('dbot-clip-l14-vit', 'dbot-vit'),
}
PRETRAIN = {  # CLIP-row config -> the pre-training config of its student
    DET_B: 'dbot_vitb_clip-b16.py', SEG_B: 'dbot_vitb_clip-b16.py',
    DET_L: 'dbot_vitl_clip-l14.py', SEG_L: 'dbot_vitl_clip-l14.py',
}
CKPT = {
    DET_B: 'checkpoints/dbot_vitb_clip-b16_1600e.pth',
    SEG_B: 'checkpoints/dbot_vitb_clip-b16_1600e.pth',
    DET_L: 'checkpoints/dbot_vitl_clip-l14_1600e.pth',
    SEG_L: 'checkpoints/dbot_vitl_clip-l14_1600e.pth',
}
# Official `beit` branch DOWNSTREAM.md + the `main` branch beit_* det
# config files: (lr, layer decay, drop path)
RECIPE = {
    DET_B: (1e-4, 0.8, 0.1),
    DET_L: (7e-5, 0.9, 0.2),
    SEG_B: (3e-5, 0.85, 0.1),
    SEG_L: (9e-6, 0.9, 0.1),
}
ROWS = sorted(ASYM)
# the official COCO commands' backbone: absolute position embedding, no
# relative position bias -> the relative-position config it composes from
ABS_POS = {
    rel.replace('-p16_fpn', '-p16-abs-pos_fpn'): rel for rel in (DET_B, DET_L)
}
TABLE = 'relative_position_bias_table'


def _flat(d, prefix=''):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f'{prefix}{k}.'))
        else:
            out[f'{prefix}{k}'] = v
    return out


def _intended_changes(rel):
    """Every key the CLIP-row config changes in its asymmetric base."""
    lr, decay, dpr = RECIPE[rel]
    base = load_config(ASYM[rel])
    changes = {
        'pretrained': CKPT[rel],
        'model.backbone.init_cfg.checkpoint': CKPT[rel],
        'model.backbone.layer_scale_init_value': 0.1,
        'model.backbone.pretrained_new_keys': (r'^adapter\.', ),
        'optim_wrapper.paramwise_cfg.layer_decay_rate': decay,
    }
    if not base.model.backbone.get('use_rel_pos_bias'):
        changes['model.backbone.use_rel_pos_bias'] = True
    if base.model.backbone.drop_path_rate != dpr:
        changes['model.backbone.drop_path_rate'] = dpr
    if base.optim_wrapper.optimizer.lr != lr:
        changes['optim_wrapper.optimizer.lr'] = lr
    if rel.startswith('seg/'):  # DOWNSTREAM.md: use_checkpoint=True
        changes['model.backbone.with_cp'] = True
    return changes


@pytest.mark.parametrize('rel', ROWS)
def test_config_differs_from_its_asymmetric_base_only_as_intended(
        rel, monkeypatch):
    monkeypatch.delenv('DBOT_PRETRAINED', raising=False)
    ours = _flat(load_config(rel).to_dict())
    base = _flat(load_config(ASYM[rel]).to_dict())
    diff = {k: ours.get(k, '<absent>')
            for k in set(ours) | set(base)
            if ours.get(k, '<absent>') != base.get(k, '<absent>')}
    expected = _intended_changes(rel)
    assert sorted(diff) == sorted(expected)
    for key, value in expected.items():
        got = diff[key]
        assert (tuple(got) if isinstance(got, list) else got) == value, key


@pytest.mark.parametrize('rel', ROWS)
def test_official_recipe_values(rel):
    cfg = load_config(rel)
    lr, decay, dpr = RECIPE[rel]
    bb, ow = cfg.model.backbone, cfg.optim_wrapper
    assert bb.type == 'ViTDense' and bb.init_cfg.prefix == 'backbone.'
    assert bb.arch == ('b' if 'vit-base' in rel else 'l')
    assert bb.use_rel_pos_bias and bb.layer_scale_init_value == 0.1
    assert bb.drop_path_rate == dpr and bb.with_cp
    assert ow.optimizer.lr == lr and ow.paramwise_cfg.layer_decay_rate == decay
    assert ow.optimizer.weight_decay == 0.05
    assert ow.constructor == 'LayerDecayOptimWrapperConstructor'
    if rel.startswith('det/'):
        assert cfg.train_cfg.max_epochs == 12
        steps = [s for s in cfg.param_scheduler if s.type == 'MultiStepLR']
        assert steps[0].milestones == [8, 11]
    else:
        assert cfg.train_cfg.max_iters == 160000
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs


@pytest.mark.parametrize('rel', ROWS)
def test_pretrained_path_reads_the_env_variable(rel, monkeypatch, tmp_path):
    path = str(tmp_path / 'published-0123abcd.pth')
    monkeypatch.setenv('DBOT_PRETRAINED', path)
    cfg = load_config(rel)
    assert cfg.pretrained == path
    assert cfg.model.backbone.init_cfg.checkpoint == path


@pytest.mark.parametrize('rel', sorted(ABS_POS))
def test_absolute_position_config_changes_the_position_only(rel):
    ours = _flat(load_config(rel).to_dict())
    base = _flat(load_config(ABS_POS[rel]).to_dict())
    diff = {k: ours.get(k) for k in set(ours) | set(base)
            if ours.get(k, '<absent>') != base.get(k, '<absent>')}
    assert diff == {'model.backbone.use_rel_pos_bias': False}
    bb = load_config(rel).model.backbone
    # layer scales still come from the checkpoint; its position embedding
    # is loaded (ViTDense always has a trainable one)
    assert tuple(bb.pretrained_new_keys) == (r'^adapter\.', )
    assert bb.layer_scale_init_value == 0.1


def test_docs_and_metafile_name_the_configs():
    import yaml
    with open(osp.join(REPO, 'docs', 'model_zoo.md')) as f:
        docs = f.read()
    with open(osp.join(REPO, 'configs', 'pretrain', 'metafile.yml')) as f:
        meta = f.read()
    for rel in ROWS + sorted(ABS_POS):
        assert f'configs/{rel}' in docs and f'configs/{rel}' in meta, rel
    # the reported COCO numbers belong to the official commands' backbone
    box = {m['Config']: r['Metrics']['box AP']
           for m in yaml.safe_load(meta)['Models']
           for r in (m['Results'] or []) if r['Task'] == 'Object Detection'}
    assert box['configs/' + sorted(ABS_POS)[0]] == 53.6
    assert box['configs/' + sorted(ABS_POS)[1]] == 56.8
    assert not {'configs/' + rel for rel in ABS_POS.values()} & set(box)


# ---------------------------------------------------------------- weights
def _symmetric_student(rel):
    """The row's DBOTSymmetric (its pre-training config), tiny: the
    transfer tests' 4-block 32-wide arch at 64 px (a 4 x 4 grid), a random
    CLIP-like teacher on the same grid; parameters moved off their init so
    that tables, layer scales and norms are all distinguishable."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    import dbot_mm  # noqa: F401
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'pretrain', PRETRAIN[rel])).model
    cfg.backbone.update(arch=dict(TINY_ARCH), img_size=64)
    cfg.teacher.update(
        arch=dict(embed_dims=48, num_layers=2, num_heads=2,
                  feedforward_channels=96),
        img_size=64, patch_size=16, out_proj_dims=24, checkpoint=None)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    with torch.no_grad():
        for p in model.backbone.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def _training_checkpoint(model, path):
    """What the Runner saves: the whole algorithm plus runner state."""
    optim = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3)
    torch.save(
        dict(meta=dict(epoch=1600, iter=1600 * 312, seed=0),
             state_dict=model.state_dict(),
             optimizer=optim.state_dict(),
             param_schedulers=[dict(last_epoch=1600)],
             message_hub=dict(runtime_info=dict(epoch=1600))), path)


def _build_backbone(cfg):
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    import dbot_mm  # noqa: F401
    init_default_scope(cfg.default_scope)
    registry = importlib.import_module(
        f'{cfg.default_scope}.registry').MODELS
    backbone = registry.build(copy.deepcopy(cfg.model.backbone))
    backbone = revert_sync_batchnorm(backbone)
    backbone.init_weights()
    return backbone.eval()


def _block_features(sym, x):
    """DBOTSymmetricViT's encoder, no mask: every block's patch map."""
    with mock.patch.multiple(sym, out_indices=list(range(TINY_DEPTH)),
                             out_type='featmap', final_norm=False):
        return sym(x)


def _check_features(dense, sym, x):
    with torch.no_grad():
        expected = _block_features(sym, x)
        with mock.patch.object(dense, 'out_scales', None):
            raw = dense(x)
        outs = dense(x)  # through the multi-scale adapter
        for got, ref in zip(raw, expected):
            assert got.shape == ref.shape
            assert (got - ref).abs().max() <= 1e-5
        for up, got, ref in zip(dense.adapter, outs, expected):
            assert (got - up(ref)).abs().max() <= 1e-5
        # the pre-training forward (mask tokens in the encoder) with
        # nothing masked: its last tokens are the last map + final norm
        b, c, h, w = raw[-1].shape
        tokens = sym(x, mask=torch.zeros(b, h * w, dtype=torch.bool))
        last = sym.ln1(raw[-1].flatten(2).transpose(1, 2))
        assert (tokens[:, 1:] - last).abs().max() <= 1e-5


@pytest.mark.parametrize('rel',
                         [pytest.param(r, marks=needs_ops) for r in ROWS])
def test_published_symmetric_run_loads_and_computes_the_encoder(
        rel, tmp_path):
    import publish_model
    model = _symmetric_student(rel)
    sym = model.backbone
    src = str(tmp_path / 'epoch_1600.pth')
    _training_checkpoint(model, src)
    published = publish_model.main(
        [src, str(tmp_path / 'dbot_clip_in1k.pth')])
    from dbot_mm.utils import safe_load
    ckpt = safe_load(published)['state_dict']
    assert ckpt and all(k.startswith('backbone.') for k in ckpt)

    dense = _build_backbone(shrink(load_config(rel), checkpoint=published))
    report = dense.pretrained_report
    assert report['missing'] == []
    assert all(k.startswith('adapter.') for k in report['new']), report
    assert report['unexpected'] == ['ln1.bias', 'ln1.weight', 'mask_token']
    state = dense.state_dict()
    tables = [k for k in state if k.endswith(TABLE)]
    gammas = [k for k in state if '.gamma' in k]
    assert len(tables) == TINY_DEPTH and len(gammas) == 2 * TINY_DEPTH
    shared = sym.layers[0].attn.rel_pos_bias.relative_position_bias_table
    assert shared.abs().max() > 0  # a table that could not pass by luck
    for key in tables + gammas:
        assert key in report['loaded'], key
        assert torch.equal(state[key], ckpt['backbone.' + key]), key
    for key in tables:  # one trainable copy of the shared table per block
        assert torch.equal(state[key], shared)
    for key, value in ckpt.items():
        key = key[len('backbone.'):]
        if key in state:
            assert torch.equal(state[key], value), key

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    _check_features(dense, sym, x)
    if rel.startswith('det/'):  # COCO images are not square
        _check_features(dense, sym, torch.randn(1, 3, 64, 96))


@pytest.mark.parametrize('rel',
                         [pytest.param(r, marks=needs_ops) for r in ROWS])
def test_full_size_grid_loads_the_tables(rel, tmp_path):
    """At the config's own input size (42 x 68 / 32 x 32 patches) the
    4 x 4 pre-training tables are resized on loading, not re-initialised."""
    import publish_model
    model = _symmetric_student(rel)
    src = str(tmp_path / 'epoch_1600.pth')
    _training_checkpoint(model, src)
    published = publish_model.main([src, str(tmp_path / 'p.pth')])
    cfg = load_config(rel)
    img_size = cfg.model.backbone.img_size
    cfg = shrink(cfg, checkpoint=published)
    cfg.model.backbone.img_size = img_size
    dense = _build_backbone(cfg)
    report = dense.pretrained_report
    assert report['missing'] == [] and report['new'] == [
        k for k in report['new'] if k.startswith('adapter.')]
    h, w = dense.patch_resolution
    assert (h, w) == ((42, 68) if rel.startswith('det/') else (32, 32))
    table = dense.layers[0].attn.rel_pos_bias.relative_position_bias_table
    assert table.shape[0] == (2 * h - 1) * (2 * w - 1) + 3
    assert f'layers.0.attn.rel_pos_bias.{TABLE}' in report['loaded']
    shared = model.backbone.layers[0].attn.rel_pos_bias
    assert torch.equal(table[-3:], shared.relative_position_bias_table[-3:])


@pytest.mark.parametrize('rel', [pytest.param(r, marks=needs_ops)
                                 for r in (DET_B, SEG_B)])
def test_asymmetric_checkpoint_is_refused(rel, tmp_path):
    """A dBOT (MAE-layout) encoder has no tables or layer scales: the
    CLIP-row configs stop instead of starting them from their init."""
    from dbot_mm.utils.ckpt_load import PretrainedLoadError
    ckpt = str(tmp_path / 'asym.pth')
    make_dbot_checkpoint(ckpt)
    with pytest.raises(PretrainedLoadError, match=TABLE) as err:
        _build_backbone(shrink(load_config(rel), checkpoint=ckpt))
    assert 'gamma1' in str(err.value)
    # the asymmetric row's config takes the same file
    base = _build_backbone(shrink(load_config(ASYM[rel]), checkpoint=ckpt))
    assert base.pretrained_report['missing'] == []


@pytest.mark.parametrize('rel',
                         [pytest.param(r, marks=needs_ops) for r in ROWS])
def test_converted_official_release_loads_and_computes_beit(rel, tmp_path):
    """85.7_clip_base_pre.pth / 87.8_clip_large_pre.pth layout (BEiT: shared
    ``rel_pos_bias``, q / v biases, ``gamma_1`` / ``gamma_2``, no absolute
    embedding, mask token and lm_head) -> dbot_official_to_mm.py
    --backbone-only -> the config's backbone equals the BEiT blocks."""
    timm = pytest.importorskip('timm')  # noqa: F841
    from timm.models.beit import Beit
    torch.manual_seed(0)
    ref = Beit(img_size=64, patch_size=16, num_classes=0, embed_dim=32,
               depth=TINY_DEPTH, num_heads=2, mlp_ratio=2., qkv_bias=True,
               use_abs_pos_emb=False, use_rel_pos_bias=False,
               use_shared_rel_pos_bias=True, init_values=0.1)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ref.eval()
    state = dict(ref.state_dict())
    assert f'rel_pos_bias.{TABLE}' in state  # the shared table
    state['mask_token'] = torch.zeros(1, 1, 32)
    state['lm_head.weight'] = torch.zeros(24, 32)
    src = str(tmp_path / '85.7_clip_base_pre.pth')
    torch.save(dict(model=state), src)
    dst = str(tmp_path / 'dbot_clip_1600e.pth')
    import dbot_official_to_mm
    dbot_official_to_mm.main(
        [src, dst, '--backbone-only', '--num-heads', '2'])

    dense = _build_backbone(shrink(load_config(rel), checkpoint=dst))
    report = dense.pretrained_report
    assert report['missing'] == []
    assert all(k.startswith('adapter.') for k in report['new']), report
    for i in range(TINY_DEPTH):
        got = dense.layers[i].attn.rel_pos_bias.relative_position_bias_table
        assert torch.equal(got, state[f'rel_pos_bias.{TABLE}'])
        assert torch.equal(dense.layers[i].attn.gamma1.weight,
                           state[f'blocks.{i}.gamma_1'])
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref.forward_intermediates(
            x, indices=list(range(TINY_DEPTH)), norm=False,
            output_fmt='NCHW', intermediates_only=True)
        with mock.patch.object(dense, 'out_scales', None):
            got = dense(x)
    for g, e in zip(got, expected):
        assert (g - e).abs().max() <= 1e-5


@pytest.mark.parametrize('rel', [pytest.param(r, marks=needs_ops)
                                 for r in sorted(ABS_POS)])
def test_absolute_position_student_in_the_abs_pos_config(rel, tmp_path):
    """DOWNSTREAM.md's COCO runs used a student pre-trained with an absolute
    position embedding and no relative position bias; such a DBOTSymmetric
    run loads into the -abs-pos config and keeps its function."""
    from mmpretrain.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    sym = MODELS.build(dict(
        type='DBOTSymmetricViT', arch=dict(TINY_ARCH), img_size=64,
        patch_size=16, use_abs_pos_emb=True, use_rel_pos_bias=False))
    sym.init_weights()
    with torch.no_grad():
        for p in sym.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    sym.eval()
    path = str(tmp_path / 'abs.pth')
    torch.save(dict(state_dict={'backbone.' + k: v
                                for k, v in sym.state_dict().items()}), path)
    dense = _build_backbone(shrink(load_config(rel), checkpoint=path))
    assert dense.pretrained_report['missing'] == []
    assert torch.equal(dense.pos_embed, sym.pos_embed)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = _block_features(sym, x)
        with mock.patch.object(dense, 'out_scales', None):
            got = dense(x)
    for g, e in zip(got, expected):
        assert (g - e).abs().max() <= 1e-5
