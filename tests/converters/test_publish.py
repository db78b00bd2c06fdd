"""dbot_mm training checkpoint -> published backbone for cls / det / seg."""
import glob
import hashlib
import os.path as osp
import re
import sys

import pytest
import torch
from mmengine.logging import MessageHub
from mmpretrain.registry import MODELS

import dbot_mm  # noqa: F401
from dbot_mm.models.converters import ConversionError, extract_backbone
from dbot_mm.utils import safe_load

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools', 'model_converters'))

ARCH = dict(embed_dims=64, num_layers=2, num_heads=2,
            feedforward_channels=256)


def _train_checkpoint(path):
    """What the Runner writes: weights, AdamW state, schedulers, hub."""
    model = MODELS.build(dict(
        type='DBOT',
        backbone=dict(type='DBOTViT', arch=ARCH, img_size=32, patch_size=8),
        neck=dict(type='DBOTDecoder', num_patches=16, embed_dim=64,
                  decoder_embed_dim=32, decoder_depth=1,
                  decoder_num_heads=2),
        head=dict(type='MaskedDistillHead'),
        teacher=dict(type='ViTTeacher', arch=ARCH, img_size=32,
                     patch_size=8)))
    model.init_weights()
    optim = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.loss(torch.randn(2, 3, 32, 32))['loss'].backward()
    optim.step()
    hub = MessageHub.get_instance('publish_test')
    hub.update_scalar('train/loss', 1.0)
    torch.save(
        dict(meta=dict(epoch=8, iter=80, seed=0, mmengine='0.10.7'),
             state_dict=model.state_dict(), optimizer=optim.state_dict(),
             param_schedulers=[dict(last_epoch=8)],
             message_hub=hub.state_dict()), path)
    return model


def test_publish_keeps_only_the_backbone(tmp_path):
    src = str(tmp_path / 'epoch_8.pth')
    model = _train_checkpoint(src)
    import publish_model
    path = publish_model.main([src, str(tmp_path / 'dbot_tiny.pth')])

    match = re.fullmatch(r'dbot_tiny-([0-9a-f]{8})\.pth', osp.basename(path))
    assert match
    with open(path, 'rb') as f:
        assert hashlib.sha256(f.read()).hexdigest()[:8] == match.group(1)
    ckpt = safe_load(path)
    assert set(ckpt) == {'meta', 'state_dict'}
    assert ckpt['meta']['epoch'] == 8
    assert all(k.startswith('backbone.') for k in ckpt['state_dict'])
    expected = {'backbone.' + k for k in model.backbone.state_dict()}
    assert set(ckpt['state_dict']) == expected

    # mmpretrain classification backbone: nothing missing
    vit = MODELS.build(dict(
        type='VisionTransformer', arch=ARCH, img_size=32, patch_size=8,
        out_type='avg_featmap', final_norm=False))
    state = {k[len('backbone.'):]: v for k, v in ckpt['state_dict'].items()}
    result = vit.load_state_dict(state, strict=False)
    assert not [k for k in result.missing_keys if not k.startswith('ln2')]


def test_publish_teacher_needs_all_blocks(tmp_path):
    src = str(tmp_path / 'epoch_8.pth')
    _train_checkpoint(src)
    state, _ = extract_backbone(safe_load(src), source='teacher')
    assert 'backbone.active_depth' not in state
    ckpt = safe_load(src)
    ckpt['state_dict']['teacher.active_depth'] = torch.tensor(1)
    with pytest.raises(ConversionError, match='runs 1 of its 2 blocks'):
        extract_backbone(ckpt, source='teacher')


def _trunk_keys(arch, img_size, patch_size):
    """Keys a plain ViT has: what pre-training provides to dense tasks."""
    vit = MODELS.build(dict(type='VisionTransformer', arch=arch,
                            img_size=img_size, patch_size=patch_size,
                            out_type='raw'))
    return set(vit.state_dict())


@pytest.mark.parametrize('task', ['det', 'seg'])
def test_published_backbone_loads_into_dense_configs(tmp_path, task):
    """Every pre-trained trunk tensor reaches the det / seg backbone."""
    if not osp.exists(osp.join(ROOT, 'dbot_mm', 'models', 'backbones',
                               'vit_dense.py')):
        pytest.skip('dense-task ViT (dbot_mm/models/backbones/vit_dense.py)'
                    ' is not in the tree yet')
    # asymmetric rows (a CLIP-row config also needs rel-pos tables and
    # layer scales: tests/transfer/test_clip_row_configs.py)
    configs = sorted(c for c in glob.glob(
        osp.join(ROOT, 'configs', task, '*vit*b*.py')) if '-clip-' not in c)
    if not configs:
        pytest.skip(f'no ViT-B {task} config in configs/{task}/ yet')
    from mmengine.config import Config
    cfg = Config.fromfile(configs[0])
    backbone_cfg = cfg.model.backbone.to_dict()
    # shrink the width (12 blocks kept: out_indices refer to them)
    arch = dict(embed_dims=32, num_layers=12, num_heads=2,
                feedforward_channels=128)
    backbone_cfg.update(arch=arch, init_cfg=None)
    backbone_cfg.pop('pretrained', None)
    if task == 'det':
        import mmdet.registry as reg
    else:
        import mmseg.registry as reg
    dense = reg.MODELS.build(backbone_cfg)
    # pre-trained at 224 px; the dense backbone resizes the position table
    img_size, patch = 224, backbone_cfg.get('patch_size', 16)

    student = MODELS.build(dict(type='DBOTViT', arch=arch,
                                img_size=img_size, patch_size=patch))
    src = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(meta=dict(epoch=1), state_dict={
        'backbone.' + k: v for k, v in student.state_dict().items()}), src)
    import publish_model
    path = publish_model.main([src, str(tmp_path / 'dense.pth')])
    published = {k[len('backbone.'):]
                 for k in safe_load(path)['state_dict']}

    dense_keys = set(dense.state_dict())
    trunk = _trunk_keys(arch, img_size, patch) & dense_keys
    assert trunk, 'the dense backbone shares no key names with a ViT'
    assert not sorted(trunk - published)
    # and loading it the way the configs do works
    dense.init_cfg = dict(type='Pretrained', checkpoint=path,
                          prefix='backbone.')
    dense.init_weights()
