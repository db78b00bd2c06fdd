"""Model-zoo files: metafile / model-index load and point at real files,
the pretrained-teacher configs build, and one of them trains a step."""
import os.path as osp
import re

import pytest
import torch
import yaml
from mmengine.config import Config
from mmpretrain.registry import MODELS

import dbot_mm  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# asymmetric DBOT student with a pretrained teacher
MINE = ['dbot_vitb_clip-b16_asym.py', 'dbot_vitb_teacher-vitl.py',
        'dbot_vitb_teacher-vith.py', 'dbot_vitl_teacher-vith.py']
# the paper's CLIP rows: symmetric student (tests/models/test_dbot_symmetric)
SYMMETRIC = ['dbot_vitb_clip-b16.py', 'dbot_vitl_clip-l14.py',
             'dbot_vith_clip-l14.py']


def _metafile():
    with open(osp.join(ROOT, 'configs', 'pretrain', 'metafile.yml')) as f:
        return yaml.safe_load(f)


def test_model_index_imports_the_metafile():
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    for path in index['Import']:
        assert osp.exists(osp.join(ROOT, path)), path
    modelindex = pytest.importorskip('modelindex')
    mi = modelindex.load(osp.join(ROOT, 'model-index.yml'))
    assert len(mi.models) == len(_metafile()['Models'])


def test_metafile_entries_are_consistent():
    meta = _metafile()
    names = [m['Name'] for m in meta['Models']]
    assert len(names) == len(set(names))
    for model in meta['Models']:
        assert model['In Collection'] == 'dBOT'
        # every official row has a config
        assert osp.exists(osp.join(ROOT, model['Config'])), model['Name']
        for name in model.get('Downstream', []):
            assert name in names
        weights = model.get('Converted From', {}).get('Weights', '')
        assert weights.startswith('https://') or 'Results' in model
    # every row of the official README, with its numbers
    top1 = sorted(r['Metrics']['Top 1 Accuracy'] for m in meta['Models']
                  for r in (m['Results'] or [])
                  if r['Task'] == 'Image Classification')
    assert top1 == [84.5, 84.6, 84.6, 85.7, 86.6, 86.8, 87.4, 87.8, 88.0,
                    88.5, 89.1]


@pytest.mark.parametrize('name', MINE)
def test_pretrained_teacher_configs_build(name):
    path = osp.join(ROOT, 'configs', 'pretrain', name)
    if not osp.exists(path):
        pytest.skip(f'{name}: its base config is not in the tree yet')
    cfg = Config.fromfile(path)
    assert cfg.model.teacher.type == 'PretrainedTeacher'
    assert cfg.model.init_teacher_from_student is False
    assert not [h for h in cfg.custom_hooks
                if h['type'] == 'StageBootstrapHook']
    assert cfg.train_cfg.max_epochs == 1600
    with torch.device('meta'):
        model = MODELS.build(cfg.model)  # DBOT checks widths and grids
    assert model.neck.predict_dim == model.teacher.out_dims
    assert model.teacher.num_patches == model.backbone.num_patches


@pytest.mark.parametrize('name', SYMMETRIC)
def test_clip_row_configs_build(name):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain', name))
    assert cfg.model.type == 'DBOTSymmetric'
    assert cfg.model.teacher.type == 'PretrainedTeacher'
    assert not [h for h in cfg.custom_hooks
                if h['type'] == 'StageBootstrapHook']
    assert cfg.train_cfg.max_epochs == 1600
    with torch.device('meta'):
        model = MODELS.build(cfg.model)  # checks widths and grids
    assert model.neck.out_channels == model.teacher.out_dims
    assert model.teacher.num_patches == model.backbone.num_patches
    meta = {m.get('Config'): m for m in _metafile()['Models']}
    entry = meta['configs/pretrain/' + name]
    assert entry['Metadata']['Asymmetric Encoder-Decoder'] is False


def test_clip_config_trains_a_step(tmp_path):
    """dbot_vitb_clip-b16.py shrunk: a converted CLIP tower (output
    projection kept, as the official teacher) as teacher."""
    open_clip = pytest.importorskip('open_clip')
    from open_clip.transformer import QuickGELU, VisionTransformer

    from dbot_mm.models.converters import (convert_clip_visual,
                                           save_checkpoint, teacher_meta)
    tower = VisionTransformer(image_size=32, patch_size=8, width=48,
                              layers=2, heads=2, mlp_ratio=4.,
                              output_dim=24, act_layer=QuickGELU)
    state, _, t_cfg = convert_clip_visual(tower.state_dict(), num_heads=2,
                                          keep_proj=True)
    t_file = save_checkpoint(state, str(tmp_path / 'clip.pth'), dict(
        dbot_mm=dict(teacher_cfg=teacher_meta(t_cfg))))

    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'pretrain', 'dbot_vitb_clip-b16.py'))
    arch = dict(embed_dims=32, num_layers=2, num_heads=2,
                feedforward_channels=128)
    cfg.model.backbone.update(arch=arch, img_size=32, patch_size=8)
    cfg.model.teacher.update(arch=t_cfg['arch'], img_size=32, patch_size=8,
                             out_proj_dims=24, checkpoint=t_file)
    model = MODELS.build(cfg.model)
    model.init_weights()
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    assert model.neck.out_channels == 24
    optim = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3)
    # ImageNet-normalised as the config's preprocessor does; the teacher
    # re-normalises to CLIP's statistics
    prep = cfg.data_preprocessor
    mean, std = (torch.tensor(v).view(1, 3, 1, 1)
                 for v in (prep.mean, prep.std))
    inputs = (torch.randint(0, 255, (2, 3, 32, 32)).float() - mean) / std
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, 1:3, 1:4] = True
    loss = model.loss(inputs, mask=mask)['loss']
    loss.backward()
    optim.step()
    assert torch.isfinite(loss)
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(not p.requires_grad for p in model.teacher.parameters())


def test_docs_list_every_download_and_config():
    with open(osp.join(ROOT, 'docs', 'model_zoo.md')) as f:
        docs = f.read()
    for model in _metafile()['Models']:
        url = model.get('Converted From', {}).get('Weights')
        if url:
            assert url in docs, url
    for path in set(re.findall(r'configs/[\w/.-]+\.py', docs)):
        assert osp.exists(osp.join(ROOT, path)), path
    for tool in set(re.findall(r'tools/model_converters/\w+\.py', docs)):
        assert osp.exists(osp.join(ROOT, tool)), tool
