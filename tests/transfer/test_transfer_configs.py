"""Every config in configs/{cls,det,seg}: parses with the official recipe,
takes its weights from one variable, builds, runs a forward on CPU (tiny
arch) and loads a dbot_mm pretraining checkpoint with no missing keys."""
import copy

import pytest
import torch

from transfer_tiny import (TINY_DEPTH, build_model, configs,
                           load_config, make_dbot_checkpoint, needs_ops,
                           shrink)

CLS, DET, SEG = configs('cls'), configs('det'), configs('seg')
# The CLIP-teacher rows' det / seg configs (symmetric student: their own
# recipe, a checkpoint that must carry relative position tables and layer
# scales) are checked in test_clip_row_configs.py; the recipe and loading
# tests here are the asymmetric rows'.
CLIP_DET = [c for c in DET if '-clip-' in c]
CLIP_SEG = [c for c in SEG if '-clip-' in c]
DET = [c for c in DET if c not in CLIP_DET]
SEG = [c for c in SEG if c not in CLIP_SEG]
ARCH = {'vit-base': ('b', 12, 768), 'vit-large': ('l', 24, 1024),
        'vit-huge': ('h', 32, 1280)}
PATCH = {'b': 16, 'l': 16, 'h': 14}
# ViT-H/14 at 224 and 448 px: their own recipe (test_vith_finetune_recipe)
VITH = [c for c in CLS if 'vit-huge' in c]


def _arch_of(name):
    return next(v for k, v in ARCH.items() if f'{k}-' in name)


def _needs_ops(rel):
    return [] if rel.startswith('cls/') else needs_ops


def test_the_expected_configs_exist():
    assert len(CLS) == 6 and len(DET) == 4 and len(SEG) == 2
    assert len(VITH) == 2 and sum('448px' in c for c in VITH) == 1
    # relative position bias as pre-trained, and the official commands'
    # absolute position embedding
    assert len(CLIP_DET) == 4 and len(CLIP_SEG) == 2
    assert sum('-abs-pos_' in c for c in CLIP_DET) == 2
    assert any('linear' in c for c in CLS)
    assert sum('3x' in c for c in DET) == 2


@pytest.mark.parametrize('rel', CLS + DET + SEG + CLIP_DET + CLIP_SEG)
def test_config_uses_shared_arch_and_one_pretrained_variable(rel):
    cfg = load_config(rel)
    arch, depth, dims = _arch_of(rel)
    bb = cfg.model.backbone
    assert 'dbot_mm' in cfg.custom_imports.imports
    assert bb.type == 'ViTDense'
    assert bb.arch == arch and bb.patch_size == PATCH[arch]  # _base_/models
    assert bb.init_cfg == dict(
        type='Pretrained', checkpoint=cfg.pretrained, prefix='backbone.')
    if 'linear' not in rel:
        assert cfg.optim_wrapper.constructor == \
            'LayerDecayOptimWrapperConstructor'
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    if not rel.startswith('cls/'):
        assert len(bb.out_indices) == 4 and bb.out_indices[-1] == depth - 1
        assert bb.out_scales == (4, 2, 1, 0.5)
        assert bb.adapter_norm_cfg.type == 'SyncBN'


def test_pretrained_path_is_overridable(monkeypatch, tmp_path):
    rel = DET[0]
    monkeypatch.setenv('DBOT_PRETRAINED', str(tmp_path / 'a.pth'))
    cfg = load_config(rel)
    assert cfg.model.backbone.init_cfg.checkpoint == str(tmp_path / 'a.pth')
    cfg.merge_from_dict({'model.backbone.init_cfg.checkpoint': 'b.pth'})
    assert cfg.model.backbone.init_cfg.checkpoint == 'b.pth'


def _scheduler(cfg, type_):
    return next(s for s in cfg.param_scheduler if s.type == type_)


@pytest.mark.parametrize('rel', [c for c in CLS
                                 if 'linear' not in c and c not in VITH])
def test_cls_finetune_recipe(rel):
    cfg = load_config(rel)
    large = 'vit-large' in rel
    ow = cfg.optim_wrapper
    assert ow.optimizer.type == 'AdamW'
    assert ow.optimizer.lr == pytest.approx(3e-4 * 1024 / 256)
    assert ow.optimizer.weight_decay == 0.05
    assert ow.paramwise_cfg == dict(layer_decay_rate=0.75 if large else 0.65)
    assert cfg.model.backbone.drop_path_rate == (0.25 if large else 0.1)
    assert cfg.model.backbone.out_type == 'avg_featmap'
    assert (ow.get('clip_grad') or {}).get('max_norm') == (
        1.0 if large else None)
    epochs = 50 if large else 100
    assert cfg.train_cfg.max_epochs == epochs
    assert cfg.train_dataloader.batch_size * 8 == 1024
    warm, cos = _scheduler(cfg, 'LinearLR'), _scheduler(cfg, 'CosineAnnealingLR')
    assert warm.end == 5 and cos.end == epochs and cos.eta_min == 1e-6
    assert cfg.model.head.loss.label_smooth_val == 0.1
    aug = {a.type: a.alpha for a in cfg.model.train_cfg.augments}
    assert aug == {'Mixup': 0.8, 'CutMix': 1.0}
    steps = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    assert steps['RandomErasing'].erase_prob == 0.25
    assert steps['RandAugment'].magnitude_level == 9


@pytest.mark.parametrize('rel', VITH)
def test_vith_finetune_recipe(rel, monkeypatch):
    """Official DOWNSTREAM.md ViT-H/14 (224 px) and ViT-H/14-448."""
    monkeypatch.delenv('DBOT_PRETRAINED', raising=False)
    monkeypatch.delenv('DBOT_FINETUNED', raising=False)
    cfg = load_config(rel)
    hi = '448px' in rel
    bb, ow = cfg.model.backbone, cfg.optim_wrapper
    assert (bb.arch, bb.patch_size, bb.img_size) == ('h', 14,
                                                     448 if hi else 224)
    assert cfg.model.head.in_channels == 1280
    assert bb.drop_path_rate == (0.4 if hi else 0.3)
    # blr 7e-5 / 3e-4 for 1024 images per update, as GPUs x batch x accum
    assert ow.optimizer.lr == pytest.approx((7e-5 if hi else 3e-4) * 4)
    assert ow.paramwise_cfg == dict(layer_decay_rate=0.9 if hi else 0.75)
    assert ow.get('clip_grad') is None
    batch, accum = (8, 4) if hi else (16, 2)
    assert cfg.train_dataloader.batch_size == batch
    assert ow.accumulative_counts == accum
    assert 32 * batch * accum == 1024
    assert cfg.auto_scale_lr.base_batch_size == 32 * batch
    epochs, warmup = (10, 2) if hi else (50, 5)
    assert cfg.train_cfg.max_epochs == epochs
    warm, cos = cfg.param_scheduler
    assert warm.end == warmup and cos.end == epochs and cos.eta_min == 1e-6
    if hi:  # from the 224 px fine-tune; new classifier; 448 px crops
        assert warm.start_factor == 0
        assert bb.init_cfg.checkpoint == 'checkpoints/dbot_vith_ft_in1k.pth'
        assert cfg.model.head.init_cfg[0].type == 'TruncNormal'
        for loader in (cfg.train_dataloader, cfg.val_dataloader):
            sizes = {t.type: t.get('scale', t.get('crop_size'))
                     for t in loader.dataset.pipeline}
            assert all(sizes[k] == 448 for k in (
                'RandomResizedCrop', 'ResizeEdge', 'CenterCrop')
                if k in sizes)
        assert cfg.test_dataloader == cfg.val_dataloader
    else:
        assert bb.init_cfg.checkpoint == 'checkpoints/dbot_vith_1600e.pth'


@pytest.mark.parametrize('rel', DET)
def test_det_recipe(rel):
    cfg = load_config(rel)
    ow = cfg.optim_wrapper
    assert ow.optimizer.type == 'AdamW' and ow.optimizer.lr == 1e-4
    assert ow.optimizer.weight_decay == 0.05
    assert ow.paramwise_cfg.layer_decay_rate == 0.75
    three = '3x' in rel
    assert cfg.train_cfg.max_epochs == (36 if three else 12)
    assert _scheduler(cfg, 'MultiStepLR').milestones == (
        [27, 33] if three else [8, 11])
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs
    assert cfg.model.type == 'CascadeRCNN'
    for head in cfg.model.roi_head.bbox_head:
        assert (head.num_shared_convs, head.num_shared_fcs) == (4, 1)
        assert head.norm_cfg.type == 'SyncBN'
        assert head.loss_bbox == dict(type='GIoULoss', loss_weight=10.0)
    _, _, dims = _arch_of(rel)
    assert cfg.model.neck.in_channels == [dims] * 4
    assert cfg.model.neck.out_channels == 256
    kinds = [t.type for t in cfg.train_dataloader.dataset.pipeline]
    assert 'RandomChoice' in kinds  # DETR-style multi-scale / crop


@pytest.mark.parametrize('rel', SEG)
def test_seg_recipe(rel):
    cfg = load_config(rel)
    large = 'vit-large' in rel
    _, _, dims = _arch_of(rel)
    ow = cfg.optim_wrapper
    assert ow.optimizer.type == 'AdamW' and ow.optimizer.weight_decay == 0.05
    assert ow.optimizer.lr == (3e-5 if large else 1e-4)
    assert ow.paramwise_cfg.layer_decay_rate == (0.95 if large else 0.65)
    warm, poly = _scheduler(cfg, 'LinearLR'), _scheduler(cfg, 'PolyLR')
    assert warm.end == 1500 and poly.begin == 1500 and poly.end == 160000
    assert poly.power == 1.0 and poly.eta_min == 0
    assert cfg.train_cfg.max_iters == 160000
    assert cfg.train_dataloader.batch_size == 2
    m = cfg.model
    assert m.decode_head.type == 'UPerHead' and m.decode_head.channels == dims
    assert m.auxiliary_head.type == 'FCNHead'
    assert m.neck is None  # the adapter lives in the backbone
    assert m.test_cfg == dict(
        mode='slide', crop_size=(512, 512), stride=(341, 341))
    bb = m.backbone
    assert bb.use_rel_pos_bias and bb.layer_scale_init_value == 1.0
    assert bb.img_size == 512
    loads = [t for t in cfg.train_dataloader.dataset.pipeline
             if t.type == 'LoadAnnotations']
    assert loads[0].reduce_zero_label


def _forward_cls(model):
    from mmpretrain.structures import DataSample
    inputs = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
              for _ in range(2)]
    samples = [DataSample().set_gt_label(i) for i in range(2)]
    data = model.data_preprocessor(
        dict(inputs=inputs, data_samples=samples), training=True)
    losses = model(**data, mode='loss')
    assert torch.isfinite(model.parse_losses(losses)[0])
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(inputs=inputs, data_samples=samples), training=False)
        preds = model(**data, mode='predict')
    assert preds[0].pred_score.shape == (10, )


def _forward_det(model):
    from mmdet.testing import demo_mm_inputs
    packed = demo_mm_inputs(2, [[3, 64, 96]] * 2, num_items=[2, 1],
                            num_classes=80, with_mask=True)
    data = model.data_preprocessor(copy.deepcopy(packed), training=True)
    losses = model(**data, mode='loss')
    assert torch.isfinite(model.parse_losses(losses)[0])
    assert {'s0.loss_bbox', 's2.loss_mask', 'loss_rpn_cls'} <= set(losses)
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(copy.deepcopy(packed), training=False)
        preds = model(**data, mode='predict')
    assert preds[0].pred_instances.bboxes.shape[-1] == 4


def _forward_seg(model):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(2):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, 64, 64)))
        s.set_metainfo(dict(img_shape=(64, 64), ori_shape=(64, 64),
                            pad_shape=(64, 64)))
        samples.append(s)
    inputs = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
              for _ in range(2)]
    data = model.data_preprocessor(
        dict(inputs=inputs, data_samples=samples), training=True)
    losses = model(**data, mode='loss')
    assert torch.isfinite(model.parse_losses(losses)[0])
    model.eval()
    # a 64 x 96 test image: slide inference over two 64-px crops
    s = SegDataSample()
    s.set_metainfo(dict(img_shape=(64, 96), ori_shape=(64, 96)))
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(inputs=[torch.randint(0, 256, (3, 64, 96),
                                       dtype=torch.uint8)],
                 data_samples=[s]), training=False)
        preds = model(**data, mode='predict')
    assert preds[0].pred_sem_seg.data.shape == (1, 64, 96)


FORWARD = {'cls': _forward_cls, 'det': _forward_det, 'seg': _forward_seg}


@pytest.mark.parametrize(
    'rel', [pytest.param(c, marks=_needs_ops(c)) for c in CLS + DET + SEG])
def test_config_builds_loads_dbot_checkpoint_and_forwards(rel, tmp_path):
    """The tiny model of each config: pretrained load report, one forward."""
    ckpt = str(tmp_path / 'dbot_pretrain.pth')
    cfg = load_config(rel)
    patch = cfg.model.backbone.patch_size
    enc = make_dbot_checkpoint(ckpt, patch_size=patch, img_size=4 * patch)
    cfg = shrink(cfg, checkpoint=ckpt)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.init_weights()

    report = model.backbone.pretrained_report
    assert report['missing'] == []
    for key, value in enc.items():
        if key in report['unexpected']:
            continue
        ours = model.backbone.state_dict()[key]
        if key != 'pos_embed' or ours.shape == value.shape:
            assert torch.equal(ours, value), key
    task = rel.split('/')[0]
    if task == 'cls' and 'linear' in rel:
        assert report['new'] == [] and 'ln1.weight' in report['loaded']
        assert not any(p.requires_grad for p in model.backbone.parameters())
    elif task == 'cls':
        assert report['new'] == ['ln2.bias', 'ln2.weight']  # fc_norm
        assert 'ln1.weight' in report['unexpected']
    else:
        assert any(k.startswith('adapter.') for k in report['new'])
        assert 'ln1.weight' in report['unexpected']  # no final norm here
    if task == 'seg':
        tables = [k for k in report['new'] if 'relative_position' in k]
        gammas = [k for k in report['new'] if '.gamma' in k]
        assert len(tables) == TINY_DEPTH and len(gammas) == 2 * TINY_DEPTH
    model.train()
    FORWARD[task](model)

