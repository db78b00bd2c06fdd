"""Fashion-MNIST mosaics: valid COCO / ADE20K layouts that mmdet and mmseg
load (those two only once mmcv's compiled ops are installed)."""
import importlib
import json
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from dbot_mm.datasets import FASHION_MNIST_CLASSES, generate_mosaic
from dbot_mm.datasets.fashion_mnist import DEFAULT_SRC
from dbot_mm.datasets.mosaic import mask_to_bbox

pytestmark = pytest.mark.skipif(
    not osp.isfile(osp.join(DEFAULT_SRC, 'train-images-idx3-ubyte.gz')),
    reason='needs `apt-get install dataset-fashion-mnist`')

ARGS = dict(num_train=8, num_val=4, canvas_size=(96, 128),
            objects_per_image=(2, 6), max_occlusion=0.3, seed=1)


@pytest.fixture(scope='module')
def mosaic(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('mosaic'))
    counts = generate_mosaic(out, **ARGS)
    assert counts['train'] == 8 and counts['val'] == 4
    return out, counts


def _coco(out, split):
    from pycocotools.coco import COCO
    return COCO(osp.join(out, 'coco', 'annotations',
                         f'instances_{split}2017.json'))


def _ade_pair(out, split, i):
    folder, prefix = dict(train=('training', 'ADE_train'),
                          val=('validation', 'ADE_val'))[split]
    img = Image.open(osp.join(out, 'ade', 'images', folder,
                              f'{prefix}_{i:08d}.jpg'))
    seg = np.asarray(Image.open(osp.join(out, 'ade', 'annotations', folder,
                                         f'{prefix}_{i:08d}.png')))
    return img, seg


def _import_or_skip(name):
    """Skip while mmcv has no compiled ops; any other error fails."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        pytest.skip(f'{name} does not import ({e}); needs mmcv with ops')


@pytest.mark.parametrize('split,num', [('train', 8), ('val', 4)])
def test_coco_annotations_are_valid(mosaic, split, num):
    out, counts = mosaic
    coco = _coco(out, split)
    assert len(coco.getImgIds()) == num
    assert len(coco.getAnnIds()) == counts[f'{split}_instances'] > num
    assert sorted(coco.getCatIds()) == list(range(1, 11))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(
        FASHION_MNIST_CLASSES)
    for img_id in coco.getImgIds():
        info = coco.loadImgs(img_id)[0]
        h, w = info['height'], info['width']
        assert (h, w) == (96, 128)
        assert Image.open(osp.join(out, 'coco', f'{split}2017',
                                   info['file_name'])).size == (w, h)
        union = np.zeros((h, w), int)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id)):
            x, y, bw, bh = ann['bbox']
            assert x >= 0 and y >= 0 and x + bw <= w and y + bh <= h
            mask = coco.annToMask(ann)
            assert ann['area'] == mask.sum() > 0
            assert ann['bbox'] == mask_to_bbox(mask)
            assert ann['iscrowd'] == 0 and 1 <= ann['category_id'] <= 10
            union += mask
        assert union.max() == 1  # visible masks never overlap


def test_ade_labels_match_coco_masks(mosaic):
    out, _ = mosaic
    coco = _coco(out, 'train')
    for img_id in coco.getImgIds():
        img, seg = _ade_pair(out, 'train', img_id)
        assert seg.dtype == np.uint8 and seg.shape == (96, 128)
        assert img.mode == 'RGB' and img.size == (128, 96)
        expected = np.zeros_like(seg)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id)):
            expected[coco.annToMask(ann) > 0] = ann['category_id']
        np.testing.assert_array_equal(seg, expected)
        assert set(np.unique(seg)) <= set(range(11)) and 0 in seg


def test_deterministic_and_prefix_stable(mosaic, tmp_path):
    out, _ = mosaic
    args = dict(ARGS, num_train=3, num_val=1)
    generate_mosaic(str(tmp_path), **args)
    for i in (1, 3):  # scene i does not depend on the set size
        np.testing.assert_array_equal(_ade_pair(out, 'train', i)[1],
                                      _ade_pair(str(tmp_path), 'train', i)[1])
    small = _coco(str(tmp_path), 'train').loadAnns(
        _coco(str(tmp_path), 'train').getAnnIds(imgIds=[1, 2, 3]))
    big = _coco(out, 'train').loadAnns(
        _coco(out, 'train').getAnnIds(imgIds=[1, 2, 3]))
    assert [a['segmentation'] for a in small] == [
        a['segmentation'] for a in big]
    other = generate_mosaic(str(tmp_path / 'seed2'), **dict(args, seed=2))
    assert other['train'] == 3
    assert not np.array_equal(_ade_pair(out, 'train', 1)[1],
                              _ade_pair(str(tmp_path / 'seed2'), 'train',
                                        1)[1])


def test_idempotent(mosaic):
    out, counts = mosaic
    ann = osp.join(out, 'coco', 'annotations', 'instances_train2017.json')
    before = open(ann).read()
    marker = osp.join(out, '.mosaic_done.json')
    stamp = osp.getmtime(marker)
    assert generate_mosaic(out, **ARGS) == counts
    assert osp.getmtime(marker) == stamp and open(ann).read() == before


def _is_hole_fill(pixels, poly):
    """poly = pixels with enclosed background filled in."""
    import cv2
    contours, _ = cv2.findContours(pixels.astype(np.uint8),
                                   cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros(pixels.shape, np.uint8)
    cv2.drawContours(filled, contours, -1, 1, -1)
    return np.array_equal(filled > 0, poly)


def test_disjoint_boxes_without_occlusion_and_polygons(tmp_path):
    generate_mosaic(str(tmp_path), **dict(ARGS, max_occlusion=0.0,
                                          num_val=1,
                                          mask_format='polygon'))
    coco = _coco(str(tmp_path), 'train')
    for img_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        _, seg = _ade_pair(str(tmp_path), 'train', img_id)
        for i, a in enumerate(anns):
            assert isinstance(a['segmentation'], list)
            assert all(len(p) >= 6 and len(p) % 2 == 0
                       for p in a['segmentation'])
            # the outline encloses exactly the object's pixels plus holes
            poly = coco.annToMask(a) > 0
            x, y, w, h = map(int, a['bbox'])
            pixels = np.zeros_like(poly)
            box = np.s_[y:y + h, x:x + w]  # boxes are disjoint here
            pixels[box] = seg[box] == a['category_id']
            assert a['area'] == pixels.sum()
            assert _is_hole_fill(pixels, poly)
            for b in anns[i + 1:]:
                ax, ay, aw, ah = a['bbox']
                bx, by, bw, bh = b['bbox']
                assert (ax + aw <= bx or bx + bw <= ax or ay + ah <= by
                        or by + bh <= ay)


def test_cli(tmp_path, load_tool):
    main = load_tool('mosaic').main
    main(['--out', str(tmp_path), '--num-train', '2', '--num-val', '1',
          '--canvas-size', '64', '--objects', '1', '2'])
    with open(tmp_path / 'coco' / 'annotations' /
              'instances_val2017.json') as f:
        assert len(json.load(f)['images']) == 1


def test_mmdet_coco_dataset_and_train_pipeline(mosaic):
    _import_or_skip('mmdet.datasets')
    from mmdet.datasets import CocoDataset
    from mmdet.registry import TRANSFORMS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')  # other tests may leave another scope set
    out, counts = mosaic
    pipeline = [TRANSFORMS.build(t) for t in [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='Resize', scale=(160, 120), keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs'),
    ]]
    ds = CocoDataset(
        data_root=osp.join(out, 'coco'),
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        metainfo=dict(classes=FASHION_MNIST_CLASSES),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=pipeline)
    assert len(ds) == 8
    n_inst = 0
    for i in range(len(ds)):
        item = ds[i]
        gt = item['data_samples'].gt_instances
        assert tuple(item['inputs'].shape) == (3, 120, 160)
        assert len(gt) == len(gt.masks) > 0
        assert gt.labels.min() >= 0 and gt.labels.max() <= 9
        assert gt.masks.areas.min() > 0
        n_inst += len(gt)
    assert n_inst == counts['train_instances']


def test_mmdet_polygons_with_poly2mask_false(tmp_path):
    _import_or_skip('mmdet.datasets')
    from mmdet.datasets import CocoDataset
    from mmdet.registry import TRANSFORMS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')  # other tests may leave another scope set
    generate_mosaic(str(tmp_path), **dict(ARGS, num_train=2, num_val=1,
                                          mask_format='polygon'))
    ds = CocoDataset(
        data_root=str(tmp_path / 'coco'),
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        metainfo=dict(classes=FASHION_MNIST_CLASSES),
        pipeline=[TRANSFORMS.build(t) for t in [
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True,
                 poly2mask=False)]])
    item = ds[0]
    assert len(item['gt_masks']) > 0 and not item['gt_ignore_flags'].any()
    assert type(item['gt_masks']).__name__ == 'PolygonMasks'


def test_mmseg_ade_layout_with_reduce_zero_label(mosaic):
    _import_or_skip('mmseg.datasets')
    from mmseg.datasets import BaseSegDataset
    from mmengine.registry import init_default_scope
    from mmseg.registry import TRANSFORMS
    init_default_scope('mmseg')  # other tests may leave another scope set
    out, _ = mosaic
    ds = BaseSegDataset(
        data_root=osp.join(out, 'ade'),
        data_prefix=dict(img_path='images/validation',
                         seg_map_path='annotations/validation'),
        img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True,
        metainfo=dict(classes=FASHION_MNIST_CLASSES),
        pipeline=[TRANSFORMS.build(t) for t in [
            dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')]])
    assert len(ds) == 4
    for i in range(len(ds)):
        item = ds[i]
        seg = item['data_samples'].gt_sem_seg.data.numpy()
        _, raw = _ade_pair(out, 'val', i + 1)
        assert set(np.unique(seg)) <= set(range(10)) | {255}
        assert 255 in seg and (seg != 255).any()
        np.testing.assert_array_equal(seg[0][raw == 0], 255)
        np.testing.assert_array_equal(seg[0][raw > 0], raw[raw > 0] - 1)
