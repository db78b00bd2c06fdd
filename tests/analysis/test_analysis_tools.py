"""tools/analysis/*.py end to end on a tiny dBOT checkpoint written as a
Runner writes it, on its teacher, and on converted backbone files."""
import csv
import importlib.util
import os.path as osp

import pytest
import torch

from analysis_tiny import ARCH, IMG, PATCH, save_dbot_checkpoint, write_images

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tool(name):
    path = osp.join(REPO, 'tools', 'analysis', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'_tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp('analysis')
    path = str(root / 'epoch_2.pth')
    model = save_dbot_checkpoint(path, teacher_depth=1)
    images = write_images(str(root / 'images'))
    config = root / 'tiny_config.py'
    config.write_text(
        f'model = dict(backbone=dict(arch={ARCH!r}, img_size={IMG}, '
        f'patch_size={PATCH}), teacher=dict(arch={ARCH!r}, img_size={IMG}, '
        f'patch_size={PATCH}), data_preprocessor=dict(mean=[55.9] * 3, '
        'std=[84.9] * 3, to_rgb=False))\n')
    return dict(path=path, model=model, images=images, root=root,
                config=str(config))


@pytest.mark.parametrize('component,blocks', [('backbone', 2),
                                              ('teacher', 1)])
def test_attention_distance_cli(ckpt, tmp_path, component, blocks):
    out = tmp_path / 'out'
    _tool('attention_distance').main([
        ckpt['config'], ckpt['path'], '--images', ckpt['images'],
        '--num-images', '4', '--component', component, '--out', str(out)
    ])
    assert (out / 'attention_distance.png').stat().st_size > 1000
    rows = _rows(out / 'attention_distance.csv')
    assert len(rows) == blocks * ARCH['num_heads']
    assert {int(r['layer']) for r in rows} == set(range(1, blocks + 1))
    assert all(0 <= float(r['mean_distance_px']) <= 3 * PATCH * 2**.5
               for r in rows)
    assert rows[0]['model'] == f'epoch_2:{component}'


def test_student_weights_are_the_checkpoints(ckpt, tmp_path):
    """The analysed encoder computes what the checkpoint's student does."""
    from dbot_mm.analysis import load_vit
    vit, info = load_vit(ckpt['path'], 'auto', 'backbone',
                         num_heads=ARCH['num_heads'])
    assert info['depth'] == 2 and info['patch_size'] == PATCH
    x = torch.randn(2, 3, IMG, IMG)
    student = ckpt['model'].backbone
    student.eval()  # mmpretrain's ViT.train() does not return self
    with torch.no_grad():
        assert torch.allclose(vit(x)[0], student(x, mask=None)[0],
                              atol=1e-5)
    teacher, info = load_vit(ckpt['path'], 'auto', 'teacher',
                             num_heads=ARCH['num_heads'])
    assert info['depth'] == 1 and len(teacher.layers) == 1
    with torch.no_grad():
        assert torch.allclose(teacher(x)[0], ckpt['model'].teacher(x),
                              atol=1e-5)


def test_singular_values_cli_on_published_and_bare_files(ckpt, tmp_path):
    from dbot_mm.models.converters import publish_backbone
    published, _ = publish_backbone(ckpt['path'], str(tmp_path / 'pub.pth'))
    bare = tmp_path / 'bare.pth'
    state = torch.load(ckpt['path'], weights_only=False)['state_dict']
    torch.save({k[len('backbone.'):]: v for k, v in state.items()
                if k.startswith('backbone.')}, bare)
    tool = _tool('singular_values')
    for path, arch in ((published, 'auto'), (str(bare), 'deit-tiny')):
        out = tmp_path / ('out_' + osp.basename(path))
        argv = [arch, path, '--images', ckpt['images'], '--layers', 'all',
                '--out', str(out)]
        if arch == 'deit-tiny':  # a named arch must match the weights
            with pytest.raises(ValueError, match='does not fit'):
                tool.main(argv)
            continue
        tool.main(argv + ['--num-heads', '2'])
        assert (out / 'singular_values.png').stat().st_size > 1000
        rows = _rows(out / 'singular_values.csv')
        # 6 images x 16 patch tokens = 96 rows > 32 channels: 32 values
        assert len(rows) == 2 * ARCH['embed_dims']
        first = [float(r['normalized_singular_value']) for r in rows
                 if r['layer'] == '2']
        assert first[0] == pytest.approx(1.0)
        assert first == sorted(first, reverse=True)


def test_data_root_input_and_last_block(ckpt, tmp_path):
    """An mmpretrain dataset folder as input (class sub-folders)."""
    out = tmp_path / 'sv'
    _tool('singular_values').main([
        ckpt['config'], ckpt['path'], '--data-root', ckpt['images'],
        '--tokens', 'mean', '--out', str(out)
    ])
    rows = _rows(out / 'singular_values.csv')
    assert {r['layer'] for r in rows} == {'2'}
    assert len(rows) == 6  # 6 images, one mean token each, < 32 channels
