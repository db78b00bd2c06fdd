"""Bad input gives one clear message naming the file or the config key
(docs/reliability.md maps every item of the catalogue to its test)."""
import io
import logging
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image

import dbot_mm  # noqa: F401
from dbot_mm.datasets import robust_loading
from dbot_mm.datasets.robust_loading import (CorruptImageError,
                                             RobustLoadImageFromFile,
                                             decode_image_3ch)
from dbot_mm.utils.config_checks import (ConfigCheckError, check_config,
                                         check_pretrained_checkpoints)
from rel_helpers import ROOT, make_image_folder, write_config


@pytest.fixture
def tiny(tmp_path):
    """A tiny image folder and a 2-stage tiny dBOT config over it."""
    data = make_image_folder(str(tmp_path / 'data'), n=8)
    cfg = write_config(str(tmp_path / 'cfg.py'), data, stages=(0, 1, 2),
                       warmup=0)
    return data, cfg


def _cfg(path, **options):
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(options)
    return cfg


# ------------------------------------------------------------ data paths
def test_missing_data_root_cli_prints_one_line(tmp_path, tiny):
    """The CLI exits with one line naming the key and the path: no
    traceback, no message about an annotation file."""
    _, cfg = tiny
    missing = str(tmp_path / 'no_such_data')
    result = subprocess.run(
        [sys.executable, 'tools/train.py', cfg, '--work-dir',
         str(tmp_path / 'w'), '--cfg-options',
         f'train_dataloader.dataset.data_root={missing}'],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES='',
                 PYTHONPATH=osp.dirname(osp.abspath(__file__))))
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        'train.py: error: train_dataloader.dataset.data_root: directory not '
        f'found: {missing} (relative to {ROOT}). Create the data set '
        '(docs/datasets.md) or override it with --cfg-options '
        'train_dataloader.dataset.data_root=PATH')


def test_missing_ann_file_and_image_folder(tiny):
    data, cfg = tiny
    with pytest.raises(ConfigCheckError,
                       match=r'^train_dataloader.dataset.ann_file: file not '
                       f'found: {data}/meta/nope.txt$'):
        check_config(_cfg(cfg, **{
            'train_dataloader.dataset.ann_file': 'meta/nope.txt'}))
    with pytest.raises(ConfigCheckError,
                       match=r'^train_dataloader.dataset.data_prefix: '
                       f'directory not found: {data}/images$'):
        check_config(_cfg(cfg, **{
            'train_dataloader.dataset.data_prefix': 'images'}))
    # test-time checks look at test_dataloader only
    test_cfg = _cfg(cfg)
    test_cfg.test_dataloader = dict(dataset=dict(
        type='CustomDataset', data_root=data + '_missing'))
    check_config(test_cfg, modes=('train', ))
    with pytest.raises(ConfigCheckError, match='^test_dataloader.dataset.'
                       'data_root: directory not found'):
        check_config(test_cfg, modes=('test', ))


def test_wrapped_dataset_paths_are_checked(tiny):
    data, cfg = tiny
    c = _cfg(cfg)
    c.train_dataloader.dataset = dict(
        type='RepeatDataset', times=2, dataset=dict(
            type='ConcatDataset', datasets=[
                dict(c.train_dataloader.dataset),
                dict(type='CustomDataset', data_root=data + '_b')]))
    with pytest.raises(ConfigCheckError, match=r'^train_dataloader.dataset.'
                       r'dataset.datasets\[1\].data_root: directory not'):
        check_config(c)


def test_empty_annotation_file(tiny):
    data, cfg = tiny
    open(osp.join(data, 'meta', 'train.txt'), 'w').write('\n\n')
    with pytest.raises(ConfigCheckError,
                       match=f'ann_file: {data}/meta/train.txt is empty; '
                       'the data set has no samples'):
        check_config(_cfg(cfg))


def test_empty_image_folder_is_named_by_mmpretrain(tmp_path):
    """Without an annotation file mmpretrain scans the folder; an empty one
    is already reported with its path."""
    init_default_scope('mmpretrain')
    from mmpretrain.registry import DATASETS
    os.makedirs(tmp_path / 'train')
    with pytest.raises(RuntimeError, match=f'Found 0 files in subfolders of'
                       f'.*{tmp_path}/train'):
        DATASETS.build(dict(type='CustomDataset', data_root=str(tmp_path),
                            data_prefix='train', pipeline=[]))


def test_dataset_smaller_than_one_batch(train_tool, tmp_path):
    """3 images, batch 4, drop_last: mmengine would run 2 epochs of zero
    iterations and report success; the train tool stops before any."""
    data = make_image_folder(str(tmp_path / 'data'), n=3)
    cfg = write_config(str(tmp_path / 'cfg.py'), data, stages=(0, 1, 2),
                       warmup=0)
    with pytest.raises(ConfigCheckError, match=r'^train_dataloader gives no '
                       r'iteration: 3 samples \(CustomDataset data_root='
                       f'{data} ann_file={data}/meta/train.txt\\) over 1 '
                       r'process\(es\) is less than batch_size=4 with '
                       r'drop_last=True.$'):
        train_tool.main([cfg, '--work-dir', str(tmp_path / 'work')])
    assert not [n for n in os.listdir(tmp_path / 'work')
                if n.endswith('.pth')]


# ------------------------------------------------------------ images
def _encode(img: Image.Image, fmt='PNG') -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_grayscale_rgba_palette_16bit_come_out_3_channel():
    gray = Image.fromarray(np.full((5, 7), 77, np.uint8), 'L')
    out = decode_image_3ch(_encode(gray))
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    assert (out == 77).all()

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 0
    png = _encode(Image.fromarray(rgba, 'RGBA'))
    bgr = decode_image_3ch(png)  # alpha dropped, BGR like mmcv
    assert bgr.shape == (4, 4, 3) and (bgr == [30, 20, 10]).all()
    rgb = decode_image_3ch(png, 'rgb', alpha_background=(255, 255, 255))
    assert (rgb == 255).all()  # fully transparent -> the background

    la = Image.fromarray(np.stack([np.full((3, 3), 200, np.uint8),
                                   np.full((3, 3), 255, np.uint8)], -1),
                         'LA')
    assert (decode_image_3ch(_encode(la)) == 200).all()

    pal = Image.fromarray(np.full((3, 3, 3), (0, 128, 255), np.uint8)
                          ).convert('P', palette=Image.Palette.ADAPTIVE)
    assert (decode_image_3ch(_encode(pal), 'rgb') == [0, 128, 255]).all()

    deep = Image.fromarray(np.full((3, 3), 65535, np.uint16))  # I;16
    out = decode_image_3ch(_encode(deep))
    assert out.shape == (3, 3, 3) and (out == 255).all()

    cmyk = Image.new('CMYK', (2, 2), (0, 0, 0, 0))
    assert (decode_image_3ch(_encode(cmyk, 'JPEG')) >= 250).all()


def test_transform_loads_every_mode_as_3_channels(tmp_path):
    modes = {
        'gray.png': Image.new('L', (16, 16), 9),
        'rgba.png': Image.new('RGBA', (16, 16), (1, 2, 3, 4)),
        'rgb.jpg': Image.new('RGB', (16, 16), (200, 100, 0)),
        'bw.png': Image.new('1', (16, 16), 1),
    }
    load = RobustLoadImageFromFile(on_error='raise')
    for name, img in modes.items():
        img.save(tmp_path / name)
        out = load(dict(img_path=str(tmp_path / name)))
        assert out['img'].shape == (16, 16, 3), name
        assert out['img_shape'] == out['ori_shape'] == (16, 16)


@pytest.fixture
def damaged(tmp_path):
    """Two good PNGs, a truncated PNG, a truncated JPEG, a text file named
    .png and a listed file that does not exist."""
    rng = np.random.default_rng(0)
    paths = {}
    for name in ('good0.png', 'good1.png', 'trunc.png', 'trunc.jpg'):
        img = Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8))
        img.save(tmp_path / name)
        paths[name] = str(tmp_path / name)
    for name in ('trunc.png', 'trunc.jpg'):
        data = open(paths[name], 'rb').read()
        open(paths[name], 'wb').write(data[:len(data) // 2])
    (tmp_path / 'text.png').write_text('not an image')
    paths['text.png'] = str(tmp_path / 'text.png')
    paths['gone.png'] = str(tmp_path / 'gone.png')
    robust_loading._SKIPPED.clear()
    robust_loading._CONSECUTIVE[0] = 0
    yield paths
    robust_loading._SKIPPED.clear()
    robust_loading._CONSECUTIVE[0] = 0


def test_corrupt_image_raise_policy_names_the_file(damaged):
    load = RobustLoadImageFromFile(on_error='raise')
    for name in ('trunc.png', 'trunc.jpg', 'text.png', 'gone.png'):
        with pytest.raises(CorruptImageError,
                           match=f'^Cannot read image {damaged[name]} '):
            load(dict(img_path=damaged[name]))
    assert load(dict(img_path=damaged['good0.png']))['img'].shape == (32, 32,
                                                                      3)


class _Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_corrupt_image_skip_policy_counts_and_logs(damaged):
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    caplog = _Records()
    logger.addHandler(caplog)
    load = RobustLoadImageFromFile(on_error='skip', max_skipped=4)
    bad = ['trunc.png', 'trunc.jpg', 'text.png', 'gone.png']
    try:
        for name in bad:
            assert load(dict(img_path=damaged[name])) is None
            # a good image in between: failures are not consecutive
            assert load(dict(img_path=damaged['good0.png'])) is not None
    finally:
        logger.removeHandler(caplog)
    assert sorted(robust_loading.skipped_images()) == sorted(
        damaged[n] for n in bad)
    assert 'image file is truncated' in robust_loading.skipped_images()[
        damaged['trunc.jpg']]
    warnings = [r.getMessage() for r in caplog.records
                if 'Skipped unreadable image' in r.getMessage()]
    assert len(warnings) == 4
    assert warnings[-1].startswith(f'Skipped unreadable image '
                                   f'{damaged["gone.png"]}')
    assert '4 skipped so far in this process (max_skipped=4)' in warnings[-1]
    # a fifth unreadable file: the data set is damaged, stop
    with pytest.raises(CorruptImageError, match='5 unreadable images in this '
                       'process, more than max_skipped=4'):
        load(dict(img_path=str(damaged['gone.png']) + '.2'))


def test_skip_policy_in_a_dataset_serves_only_good_images(tmp_path, damaged):
    """mmengine's dataset draws another index for a skipped sample; an
    all-damaged data set stops at max_skipped instead of looping."""
    init_default_scope('mmpretrain')
    from mmpretrain.registry import DATASETS
    names = ['good0.png', 'trunc.png', 'good1.png', 'trunc.jpg']
    (tmp_path / 'list.txt').write_text(''.join(f'{n} 0\n' for n in names))
    pipeline = [dict(type='RobustLoadImageFromFile', on_error='skip'),
                dict(type='PackInputs')]
    ds = DATASETS.build(dict(type='CustomDataset', data_root=str(tmp_path),
                             ann_file='list.txt', with_label=True,
                             pipeline=pipeline))
    np.random.seed(0)
    served = [ds[i]['data_samples'].img_path for i in range(len(ds))]
    assert set(served) <= {damaged['good0.png'], damaged['good1.png']}
    assert set(robust_loading.skipped_images()) == {damaged['trunc.png'],
                                                    damaged['trunc.jpg']}

    (tmp_path / 'bad.txt').write_text('trunc.png 0\ntrunc.jpg 0\n')
    pipeline[0]['max_consecutive'] = 20
    ds = DATASETS.build(dict(type='CustomDataset', data_root=str(tmp_path),
                             ann_file='bad.txt', pipeline=pipeline))
    with pytest.raises(CorruptImageError, match=r'^20 image loads in a row '
                       r'failed \(max_consecutive=20; unreadable: '):
        ds[0]


def test_policy_arguments_are_validated():
    with pytest.raises(ValueError, match="on_error must be 'skip' or "
                       "'raise', got 'ignore'"):
        RobustLoadImageFromFile(on_error='ignore')
    with pytest.raises(ValueError, match='max_skipped'):
        RobustLoadImageFromFile(max_skipped=-1)
    with pytest.raises(ValueError, match='max_consecutive'):
        RobustLoadImageFromFile(max_consecutive=0)


# ------------------------------------------------------------ model inputs
def test_input_size_other_than_img_size_is_named(tiny):
    """A pipeline that crops 12 px for a 16 px model, or an img_size the
    patch size does not divide, is a clear error (more in tests/models)."""
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(tiny[1])
    model = MODELS.build(cfg.model)
    with pytest.raises(ValueError, match=r'input of size \(12, 12\) does not '
                       r'match img_size=\(16, 16\)'):
        model.loss(torch.zeros(2, 3, 12, 12))
    cfg.model.backbone.img_size = 18
    with pytest.raises(ValueError, match=r'img_size=18 is not divisible by '
                       r'patch_size=4'):
        MODELS.build(cfg.model)


# ------------------------------------------------------------ stages
@pytest.mark.parametrize('hook,max_epochs,msg', [
    (dict(stages=[0, 2, 1, 3], teacher_depths=[2, 2, 2]), 3,
     r'`custom_hooks\[0\].stages` must be strictly increasing'),
    (dict(stages=[0, 1, 2], teacher_depths=[2, 2]), 3,
     r'custom_hooks\[0\].stages must end at train_cfg.max_epochs \(3\); '
     r'got \[0, 1, 2\]'),
    (dict(stages=[0, 1, 2], teacher_depths=[2, 2, 2]), 2,
     r'custom_hooks\[0\].teacher_depths needs one entry per stage: stages '
     r'\[0, 1, 2\] has 2 stages, got \[2, 2, 2\]'),
])
def test_stage_config_checked_before_building(tiny, hook, max_epochs, msg):
    """The hook checks these too (tests/engine/test_stage_bootstrap_hook.py),
    but only once the model and data are built; the config check fails in
    a second."""
    _, cfg = tiny
    c = _cfg(cfg)
    c.custom_hooks = [dict(type='StageBootstrapHook', **hook)]
    c.train_cfg.max_epochs = max_epochs
    with pytest.raises(ValueError, match=msg):
        check_config(c)


# ------------------------------------------------------------ checkpoints
def _tiny_vit_state(width=32, patch=4, img=16):
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    vit = MODELS.build(dict(
        type='DBOTViT', arch=dict(embed_dims=width, num_layers=2, num_heads=2,
                                  feedforward_channels=64),
        img_size=img, patch_size=patch))
    return {f'backbone.{k}': v for k, v in vit.state_dict().items()}


@pytest.mark.parametrize('teacher,key', [
    (dict(arch=dict(embed_dims=48, num_layers=2, num_heads=2,
                    feedforward_channels=64), patch_size=4),
     'backbone.cls_token'),
    (dict(arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                    feedforward_channels=64), patch_size=8),
     'backbone.patch_embed.projection.weight'),
])
def test_teacher_checkpoint_of_wrong_width_or_patch_size(tmp_path, teacher,
                                                         key):
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    ckpt = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=_tiny_vit_state()), ckpt)
    model = MODELS.build(dict(type='PretrainedTeacher', checkpoint=ckpt,
                              img_size=16, **teacher))
    with pytest.raises(ValueError, match=f'^{ckpt}: shape mismatch for '
                       f'"{key}": checkpoint'):
        model.init_weights()


def test_teacher_checkpoint_missing_or_without_prefix(tmp_path, tiny):
    _, cfg = tiny
    c = _cfg(cfg)
    c.model.teacher = dict(type='PretrainedTeacher', checkpoint=str(
        tmp_path / 'nope.pth'), depth=2)
    with pytest.raises(ConfigCheckError, match=r'^model.teacher.checkpoint: '
                       f'file not found: {tmp_path}/nope.pth$'):
        check_config(c)
    ckpt = str(tmp_path / 'head_only.pth')
    torch.save(dict(state_dict={'head.w': torch.ones(1)}), ckpt)
    c.model.teacher.checkpoint = ckpt
    with pytest.raises(ConfigCheckError, match=f'model.teacher: {ckpt} has '
                       'no weights under prefix "backbone."'):
        check_config(c)


DET = 'configs/det/cascade-mask-rcnn_dbot-vit-base-p16_fpn_4conv1fc-giou_' \
    'amp-ms-crop-1x_coco.py'
SEG = 'configs/seg/upernet_dbot-vit-base-p16_8xb2-amp-160k_ade20k-512x512.py'


@pytest.mark.parametrize('config', [DET, SEG])
def test_det_seg_checkpoint_without_backbone_keys(tmp_path, monkeypatch,
                                                  config):
    """DBOT_PRETRAINED pointing at a file that is not a pretraining
    checkpoint (here a teacher/head-only file) is refused before the
    detector is built, naming the file, the config key and the prefixes the
    file does have."""
    ckpt = str(tmp_path / 'not_pretrain.pth')
    state = {k.replace('backbone.', 'teacher.'): v
             for k, v in _tiny_vit_state().items()}
    state['head.fc.weight'] = torch.zeros(2, 2)
    torch.save(dict(state_dict=state), ckpt)
    monkeypatch.setenv('DBOT_PRETRAINED', ckpt)
    cfg = Config.fromfile(osp.join(ROOT, config))
    assert cfg.model.backbone.init_cfg.checkpoint == ckpt
    with pytest.raises(ConfigCheckError, match=(
            f'^model.backbone.init_cfg: {ckpt} has no weights under prefix '
            r'"backbone." \(its top-level prefixes: \[\'head.\', '
            r'\'teacher.\'\]\)')):
        check_pretrained_checkpoints(cfg)
    monkeypatch.setenv('DBOT_PRETRAINED', ckpt + '.missing')
    cfg = Config.fromfile(osp.join(ROOT, config))
    with pytest.raises(ConfigCheckError, match=(
            '^model.backbone.init_cfg.checkpoint: file not found: '
            f'{ckpt}.missing$')):
        check_pretrained_checkpoints(cfg)


def test_malicious_teacher_checkpoint_is_refused(tmp_path, tiny):
    """The pickle exploit through the teacher path (the mmengine path is in
    tests/utils/test_safe_load.py): refused, named, not executed; the
    config check does not execute it either."""
    from dbot_mm.utils import UnsafeCheckpointError

    marker = tmp_path / 'pwned'

    class Payload:

        def __reduce__(self):
            return (os.system, (f'touch {marker}', ))

    ckpt = str(tmp_path / 'evil.pth')
    state = _tiny_vit_state()
    torch.save(dict(state_dict=state, meta=Payload()), ckpt)
    _, cfg = tiny
    c = _cfg(cfg)
    c.model.teacher = dict(type='PretrainedTeacher', checkpoint=ckpt,
                           depth=2)
    check_config(c)  # cannot read it safely: left to the loader
    assert not marker.exists()
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    teacher = MODELS.build(dict(
        type='PretrainedTeacher', checkpoint=ckpt, img_size=16, patch_size=4,
        arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64)))
    with pytest.raises(UnsafeCheckpointError,
                       match=f'Refused to load checkpoint "{ckpt}"'):
        teacher.init_weights()
    assert not marker.exists()


def test_truncated_checkpoint_given_to_resume(train_tool, tmp_path, tiny):
    _, cfg = tiny
    ckpt = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': {'w': torch.randn(1000)}}, ckpt)
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[:len(data) // 2])
    with pytest.raises(ConfigCheckError, match=f'^--resume: {ckpt} is not a '
                       r'complete checkpoint \(truncated by a crash\?\)'):
        train_tool.main([cfg, '--resume', str(ckpt), '--work-dir',
                         str(tmp_path / 'w')])
