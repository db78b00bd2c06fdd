"""End to end on CPU: tiny datasets in the exact COCO / ADE20K layouts,
the real det / seg configs (tiny arch, small images), an mmengine Runner
that loads a dbot_mm pretraining checkpoint, trains a few iterations and is
scored by mmdet's CocoMetric (pycocotools) and mmseg's IoUMetric."""
import json
import math
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from transfer_tiny import (configs, cpu_optim_wrapper, load_config,
                           make_dbot_checkpoint, needs_ops, shrink)

pytestmark = needs_ops
CLASSES = ('box', 'disc')


def _scale_sizes(pipeline, factor):
    """Shrink every image size in a pipeline (scales, crops) by ``factor``,
    keeping the recipe's transforms (DETR-style choice / crop / resize)."""
    def fix(size):
        return tuple(max(int(round(s / factor)), 8) for s in size)

    for t in pipeline:
        if t.get('transforms'):
            for branch in t.transforms:
                _scale_sizes(branch if isinstance(branch, list) else [branch],
                             factor)
        if 'scales' in t:
            t.scales = [fix(s) for s in t.scales]
        if 'scale' in t and isinstance(t.scale, (tuple, list)):
            t.scale = fix(t.scale)
        if 'crop_size' in t:
            t.crop_size = fix(t.crop_size)


def _shapes(rng, w, h):
    """1-3 objects: (class index, polygon as [x0, y0, x1, y1, ...])."""
    objects = []
    for _ in range(rng.integers(1, 4)):
        cls = int(rng.integers(0, 2))
        bw, bh = rng.integers(w // 5, w // 2), rng.integers(h // 5, h // 2)
        x0, y0 = rng.integers(0, w - bw), rng.integers(0, h - bh)
        if cls == 0:
            poly = [x0, y0, x0 + bw, y0, x0 + bw, y0 + bh, x0, y0 + bh]
        else:
            cx, cy = x0 + bw / 2, y0 + bh / 2
            poly = []
            for k in range(16):
                a = 2 * math.pi * k / 16
                poly += [cx + bw / 2 * math.cos(a), cy + bh / 2 * math.sin(a)]
        objects.append((cls, [float(v) for v in poly]))
    return objects


def write_coco(root, num_train=4, num_val=2, w=160, h=120):
    """annotations/instances_{train,val}2017.json + {train,val}2017/*.jpg,
    boxes and polygon masks, as in the official COCO release."""
    rng = np.random.default_rng(0)
    os.makedirs(osp.join(root, 'annotations'))
    ann_id = 1
    for split, n in (('train', num_train), ('val', num_val)):
        img_dir = osp.join(root, f'{split}2017')
        os.makedirs(img_dir)
        images, anns = [], []
        for i in range(n):
            img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
            name = f'{split}_{i:012d}.jpg'
            for cls, poly in _shapes(rng, w, h):
                pts = np.array(poly).reshape(-1, 2)
                color = (40, 200, 40) if cls == 0 else (200, 60, 200)
                cv2.fillPoly(img, [pts.round().astype(np.int32)], color)
                x0, y0 = pts.min(0)
                x1, y1 = pts.max(0)
                anns.append(
                    dict(id=ann_id, image_id=i + 1, category_id=cls + 1,
                         bbox=[float(x0), float(y0), float(x1 - x0),
                               float(y1 - y0)],
                         area=float(cv2.contourArea(
                             pts.astype(np.float32))),
                         segmentation=[poly], iscrowd=0))
                ann_id += 1
            cv2.imwrite(osp.join(img_dir, name), img)
            images.append(dict(id=i + 1, file_name=name, width=w, height=h))
        with open(osp.join(root, 'annotations',
                           f'instances_{split}2017.json'), 'w') as f:
            json.dump(dict(images=images, annotations=anns,
                           categories=[dict(id=k + 1, name=c)
                                       for k, c in enumerate(CLASSES)]), f)


def write_ade20k(root, num_train=4, num_val=2, w=128, h=96):
    """images/{training,validation}/*.jpg and annotations/... PNGs with
    0 = "other" (ignored by reduce_zero_label) and classes 1..3."""
    rng = np.random.default_rng(0)
    for split, n in (('training', num_train), ('validation', num_val)):
        os.makedirs(osp.join(root, 'images', split))
        os.makedirs(osp.join(root, 'annotations', split))
        for i in range(n):
            img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
            label = np.zeros((h, w), np.uint8)
            for cls in (1, 2, 3):
                x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
                x1, y1 = x0 + rng.integers(16, w // 2), y0 + rng.integers(
                    16, h // 2)
                label[y0:y1, x0:x1] = cls
                img[y0:y1, x0:x1] = (60 * cls, 255 - 60 * cls, 128)
            name = f'ADE_{split[:5]}_{i:08d}'
            cv2.imwrite(osp.join(root, 'images', split, name + '.jpg'), img)
            cv2.imwrite(osp.join(root, 'annotations', split, name + '.png'),
                        label)


def _cpu_runtime(cfg, work_dir):
    cpu_optim_wrapper(cfg)
    cfg.work_dir = str(work_dir)
    cfg.randomness = dict(seed=0)
    cfg.default_hooks.logger.interval = 1
    for key in ('train_dataloader', 'val_dataloader'):
        cfg[key].update(num_workers=0, persistent_workers=False)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.test_evaluator = cfg.val_evaluator
    return cfg


def _run(cfg):
    from mmengine.model import revert_sync_batchnorm
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    revert_sync_batchnorm(runner.model)  # in place: one CPU process
    runner.train()
    return runner, runner.val()


@pytest.mark.slow
def test_cascade_mask_rcnn_trains_and_scores_on_coco_layout(tmp_path):
    root = str(tmp_path / 'coco') + '/'
    write_coco(root)
    ckpt = str(tmp_path / 'dbot.pth')
    make_dbot_checkpoint(ckpt)
    rel = next(c for c in configs('det')
               if 'base' in c and '1x' in c and '-clip-' not in c)
    cfg = _cpu_runtime(shrink(load_config(rel), checkpoint=ckpt),
                       tmp_path / 'work')
    for head in cfg.model.roi_head.bbox_head:
        head.num_classes = len(CLASSES)
    cfg.model.roi_head.mask_head.num_classes = len(CLASSES)
    for split, key in (('train', 'train_dataloader'),
                       ('val', 'val_dataloader')):
        ds = cfg[key].dataset
        ds.update(data_root=root,
                  ann_file=f'annotations/instances_{split}2017.json',
                  data_prefix=dict(img=f'{split}2017/'),
                  metainfo=dict(classes=CLASSES))
        _scale_sizes(ds.pipeline, 8)
    cfg.val_evaluator.ann_file = root + 'annotations/instances_val2017.json'
    cfg.train_cfg.update(max_epochs=2, val_interval=100)

    runner, metrics = _run(cfg)

    assert runner.iter == 4  # 4 images, batch 2, 2 epochs
    assert runner.model.backbone.pretrained_report['missing'] == []
    for key in ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50',
                'coco/segm_mAP_50'):
        assert math.isfinite(metrics[key]) and 0. <= metrics[key] <= 1.
    assert osp.isfile(osp.join(cfg.work_dir, 'epoch_2.pth'))


@pytest.mark.slow
def test_upernet_trains_and_scores_on_ade20k_layout(tmp_path):
    root = str(tmp_path / 'ADEChallengeData2016')
    write_ade20k(root)
    ckpt = str(tmp_path / 'dbot.pth')
    make_dbot_checkpoint(ckpt)
    rel = next(c for c in configs('seg')
               if 'base' in c and '-clip-' not in c)
    cfg = _cpu_runtime(shrink(load_config(rel), checkpoint=ckpt),
                       tmp_path / 'work')
    seg_classes = ('wall', 'building', 'sky')  # ADE20K's first three
    cfg.model.decode_head.num_classes = len(seg_classes)
    cfg.model.auxiliary_head.num_classes = len(seg_classes)
    for key in ('train_dataloader', 'val_dataloader'):
        cfg[key].dataset.update(
            data_root=root,
            metainfo=dict(classes=seg_classes,
                          palette=[[120, 120, 120], [180, 120, 120],
                                   [6, 230, 230]]))
        _scale_sizes(cfg[key].dataset.pipeline, 8)
    assert cfg.val_dataloader.dataset.data_prefix.seg_map_path == \
        'annotations/validation'
    cfg.train_cfg.update(max_iters=4, val_interval=100)

    runner, metrics = _run(cfg)

    assert runner.iter == 4
    assert runner.model.backbone.pretrained_report['missing'] == []
    assert runner.val_dataloader.dataset.reduce_zero_label
    for key in ('mIoU', 'aAcc', 'mAcc'):  # percentages
        assert math.isfinite(metrics[key]) and 0. <= metrics[key] <= 100.
