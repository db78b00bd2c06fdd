"""The pinned OpenMMLab stack works on this machine: mmcv's compiled ops,
and one train step + inference of the detectors / segmentors we build on."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

import dbot_mm  # noqa: F401


def test_mmcv_compiled_ops_on_cpu():
    import mmcv
    import mmcv._ext  # noqa: F401  (absent in mmcv-lite / ops-less builds)
    from mmcv.ops import RoIAlign, batched_nms, nms
    assert mmcv.__version__ == '2.1.0'

    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.],
                          [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]  # IoU(0, 1) = 81/119 > 0.5
    assert torch.allclose(dets[:, 4], torch.tensor([0.9, 0.7]))
    _, keep = batched_nms(boxes, scores, torch.tensor([0, 1, 1]),
                          dict(type='nms', iou_threshold=0.5))
    assert sorted(keep.tolist()) == [0, 1, 2]  # different classes survive

    # RoIAlign of a linear ramp: the mean of an aligned box is its centre x.
    feat = torch.arange(16.).repeat(16, 1)[None, None]  # value = x coordinate
    rois = torch.tensor([[0., 2., 2., 10., 10.]])
    out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=2,
                   aligned=True)(feat, rois)
    assert out.shape == (1, 1, 2, 2)
    assert torch.allclose(out.mean(), torch.tensor(5.5), atol=1e-4)


def _mim_config(package, rel):
    mod = __import__(package)
    return Config.fromfile(
        osp.join(osp.dirname(mod.__file__), '.mim', 'configs', rel))


def test_tiny_cascade_mask_rcnn_trains_and_predicts():
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmdet.utils import register_all_modules
    from mmengine.registry import init_default_scope
    register_all_modules()
    init_default_scope('mmdet')
    cfg = _mim_config('mmdet', '_base_/models/cascade-mask-rcnn_r50_fpn.py')
    cfg.model.backbone.update(depth=18, init_cfg=None)
    cfg.model.neck.update(in_channels=[64, 128, 256, 512], out_channels=32)
    cfg.model.rpn_head.update(in_channels=32, feat_channels=32)
    cfg.model.roi_head.bbox_roi_extractor.out_channels = 32
    cfg.model.roi_head.mask_roi_extractor.out_channels = 32
    for head in cfg.model.roi_head.bbox_head:
        head.update(in_channels=32, fc_out_channels=64, num_classes=3)
    cfg.model.roi_head.mask_head.update(in_channels=32, conv_out_channels=32,
                                        num_classes=3)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    packed = demo_mm_inputs(2, [[3, 128, 128]] * 2, num_items=[2, 3],
                            num_classes=3, with_mask=True)
    data = model.data_preprocessor(packed, training=True)
    losses = model(**data, mode='loss')
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total) and total > 0
    assert {'s0.loss_cls', 's2.loss_bbox', 's0.loss_mask'} <= set(losses)
    total.backward()
    grad = model.backbone.layer4[0].downsample[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0

    model.eval()
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    with torch.no_grad():
        data = model.data_preprocessor(copy.deepcopy(packed), training=False)
        results = model(**data, mode='predict')
    assert len(results) == 2
    pred = results[0].pred_instances
    assert pred.bboxes.shape[1] == 4 and len(pred) == len(pred.masks)


def test_tiny_upernet_mae_trains_and_predicts():
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    from mmseg.utils import register_all_modules
    register_all_modules()
    init_default_scope('mmseg')
    cfg = _mim_config('mmseg', '_base_/models/upernet_mae.py')
    cfg.model.backbone.update(img_size=(64, 64), embed_dims=32, num_layers=4,
                              num_heads=2, out_indices=(0, 1, 2, 3))
    cfg.model.neck.embed_dim = 32
    cfg.model.data_preprocessor.size = (64, 64)
    cfg.model.decode_head.update(in_channels=[32] * 4, channels=16,
                                 num_classes=5)
    cfg.model.auxiliary_head.update(in_channels=32, channels=16,
                                    num_classes=5)
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()
    samples = []
    rng = np.random.default_rng(0)
    for _ in range(2):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(
            data=torch.from_numpy(rng.integers(0, 5, (1, 64, 64))))
        s.set_metainfo(dict(img_shape=(64, 64), ori_shape=(64, 64),
                            pad_shape=(64, 64)))
        samples.append(s)
    inputs = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
              for _ in range(2)]
    data = model.data_preprocessor(
        dict(inputs=inputs, data_samples=samples), training=True)
    losses = model(**data, mode='loss')
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.patch_embed.projection.weight.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(inputs=inputs, data_samples=samples), training=False)
        results = model(**data, mode='predict')
    seg = results[0].pred_sem_seg.data
    assert seg.shape == (1, 64, 64)
    assert int(seg.max()) < 5
