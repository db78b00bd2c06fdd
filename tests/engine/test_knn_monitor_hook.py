"""KNNMonitorHook: DINO's weighted kNN, and the hook inside a real Runner."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from torch.utils.data import Dataset

import dbot_mm  # noqa: F401  (registers the hook)
from dbot_mm.engine.hooks import StageBootstrapHook
from dbot_mm.engine.hooks import knn_monitor_hook as knn_mod
from dbot_mm.engine.hooks.knn_monitor_hook import (KNNMonitorHook,
                                                   knn_classify, knn_scores)


def test_separable_toy_set_is_perfect():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(10, 16) * 5
    train_y = torch.arange(10).repeat(30)
    val_y = torch.arange(10).repeat(7)
    train_x = centres[train_y] + torch.randn(300, 16, generator=g)
    val_x = centres[val_y] + torch.randn(70, 16, generator=g)
    pred = knn_classify(train_x, train_y, val_x, k=20, T=0.07,
                        num_classes=10)
    assert torch.equal(pred, val_y)


def test_shuffled_labels_give_chance():
    g = torch.Generator().manual_seed(0)
    train_x, val_x = torch.randn(2000, 32, generator=g), torch.randn(
        1000, 32, generator=g)
    train_y = torch.randint(0, 10, (2000, ), generator=g)
    val_y = torch.randint(0, 10, (1000, ), generator=g)
    acc = (knn_classify(train_x, train_y, val_x, num_classes=10) == val_y
           ).float().mean().item()
    assert abs(acc - 0.1) < 0.04  # 0.1 +- ~4 binomial std


def test_weighting_by_hand():
    # cosine similarities to the query [1, 0]: 0.9 (class 0), 0.6 and 0.6
    # (class 1), -1 (class 0, outside k=3).
    train = torch.tensor([[0.9, math.sqrt(1 - 0.81)], [0.6, 0.8],
                          [0.6, -0.8], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 0])
    query = torch.tensor([[3.0, 0.0]])  # not unit length: normalised inside
    for T in (0.1, 10.0):
        scores = knn_scores(train * 2, labels, query, k=3, T=T,
                            num_classes=2)
        expected = torch.tensor([[math.exp(0.9 / T), 2 * math.exp(0.6 / T)]])
        assert torch.allclose(scores, expected, rtol=1e-5)
    # a sharp temperature lets the single close neighbour outvote two
    assert knn_classify(train, labels, query, k=3, T=0.1).item() == 0
    assert knn_classify(train, labels, query, k=3, T=10.0).item() == 1
    # k larger than the bank uses the whole bank (the far sample votes too)
    scores = knn_scores(train, labels, query, k=50, T=1.0, num_classes=2)
    assert torch.allclose(scores[0, 0], torch.tensor(math.exp(0.9) +
                                                     math.exp(-1.0)))


def test_gather_undoes_rank_striding(monkeypatch):
    # DefaultSampler on 2 ranks, 5 samples: rank 0 gets 0 2 4, rank 1 gets
    # 1 3 and the pad 0.
    parts = [[0, 2, 4], [1, 3, 0]]
    monkeypatch.setattr(knn_mod, 'get_world_size', lambda: 2)
    monkeypatch.setattr(knn_mod, 'all_gather_object', lambda rows: parts)
    assert KNNMonitorHook._gather(parts[0], 5) == [0, 1, 2, 3, 4]


def test_stage_ends_from_argument_or_duck_typed_hook():
    logger = SimpleNamespace(warning=lambda msg: None)
    bootstrap = StageBootstrapHook(stages=[0, 3, 6, 10],
                                   teacher_depths=[12, 12, 12])
    runner = SimpleNamespace(max_epochs=10, hooks=[Hook(), bootstrap],
                             logger=logger)
    hook = KNNMonitorHook({}, {}, interval=4)
    assert hook._find_stage_ends(runner) == {3, 6, 10}
    assert [e for e in range(1, 11) if hook._due(runner, e)] == [3, 4, 6, 8,
                                                                10]
    hook = KNNMonitorHook({}, {}, interval=0, stages=[5])
    assert hook._find_stage_ends(runner) == {5, 10}
    runner.hooks = [SimpleNamespace(stages=[dict(begin=0, end=7),
                                            dict(begin=7, end=10)])]
    assert KNNMonitorHook({}, {})._find_stage_ends(runner) == {7, 10}
    runner.hooks = [SimpleNamespace(stages='?')]
    assert KNNMonitorHook({}, {})._find_stage_ends(runner) == {10}
    # counted in iterations: epoch boundaries of other hooks do not apply
    runner.hooks, runner.max_iters = [bootstrap], 100
    hook = KNNMonitorHook({}, {}, by_epoch=False, interval=40)
    assert hook._find_stage_ends(runner) == {100}
    assert KNNMonitorHook({}, {}, by_epoch=False, stages=[0, 30, 100]
                          )._find_stage_ends(runner) == {30, 100}


# ---- inside a Runner ------------------------------------------------------
class ColourData(Dataset):
    """4x4 images whose colour is their class: mean patch token separates
    them, the cls token (always zero) does not."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 3
        noise = torch.randint(0, 40, (n, 3, 4, 4), generator=g)
        self.images = (torch.eye(3)[self.labels][:, :, None, None] * 200 +
                       noise).to(torch.uint8)
        self.metainfo = dict(classes=('r', 'g', 'b'))

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return dict(inputs=self.images[i],
                    data_samples=DataSample().set_gt_label(
                        int(self.labels[i])))


class MAELikeBackbone(nn.Module):
    """Answers like MAEViT: a tuple of (B, 1 + L, C) tokens when mask=None,
    something else otherwise."""

    num_extra_tokens = 1

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 3)
        self.calls = []

    def forward(self, x, mask=True):
        self.calls.append((mask, self.training))
        tokens = x.flatten(2).transpose(1, 2)  # identity patch "embedding"
        if mask is not None:
            return self.proj(tokens), None, None  # the masked path
        cls = torch.zeros_like(tokens[:, :1])
        return (torch.cat([cls, tokens], dim=1), )


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__(data_preprocessor=dict(
            type='mmpretrain.SelfSupDataPreprocessor', mean=[0, 0, 0],
            std=[255, 255, 255]))
        self.backbone = MAELikeBackbone()

    def forward(self, inputs, data_samples=None, mode='loss'):
        inputs = inputs[0] if isinstance(inputs, list) else inputs
        out = self.backbone(inputs)[0]
        return dict(loss=out.pow(2).mean())


class FakeBootstrapHook(Hook):
    """Only what KNNMonitorHook reads of StageBootstrapHook."""
    stages = [0, 1, 3]


def toy_runner(tmp_path, name, knn_args, extra_hooks=()):
    """3 epochs of 2 iterations; a kNN monitor on 30 / 9 colour images and
    stage ends at epochs 1 and 3."""
    loader = dict(batch_size=4, num_workers=0,
                  collate_fn=dict(type='default_collate'))
    knn_cfg = dict(
        type='KNNMonitorHook', k=5, **knn_args,
        train_dataloader=dict(loader, dataset=ColourData(30, 0)),
        val_dataloader=dict(loader, dataset=ColourData(9, 1)))
    return Runner(
        model=ToyModel(), work_dir=str(tmp_path),
        train_dataloader=dict(loader, dataset=ColourData(8, 2),
                              sampler=dict(type='DefaultSampler',
                                           shuffle=True)),
        train_cfg=dict(by_epoch=True, max_epochs=3),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        custom_hooks=[knn_cfg, FakeBootstrapHook(), *extra_hooks],
        default_hooks=dict(checkpoint=None),
        default_scope='mmpretrain', experiment_name=name)


def test_hook_in_runner_logs_top1(tmp_path):
    runner = toy_runner(tmp_path, 'knn_toy', dict(interval=2))
    runner.train()

    # stage end 1, interval 2, stage end and last epoch 3
    history = runner.message_hub.get_scalar('knn/top1')
    assert history.data[0].tolist() == [100.0, 100.0, 100.0]
    backbone = runner.model.backbone
    eval_calls = [c for c in backbone.calls if c == (None, False)]
    assert len(eval_calls) == 3 * (8 + 3)  # 30 + 9 images in batches of 4
    assert backbone.training  # restored after each evaluation
    with open(runner.logger.log_file) as f:
        log = f.read()
    assert 'knn/top1 100.00' in log and '30 train / 9 val' in log


def test_cls_feature_and_real_maevit(tmp_path):
    from mmpretrain.models import MAEViT
    model = ToyModel()
    data = dict(batch_size=3, dataset=ColourData(12, 0),
                collate_fn=dict(type='default_collate'))
    runner = SimpleNamespace(model=model, seed=0,
                             build_dataloader=Runner.build_dataloader)
    hook = KNNMonitorHook(data, data, feat='cls', k=3)
    feats, labels = hook._embed(model, hook._loader(runner, 'train'))
    assert len(feats) == 12 and not any(f.any() for f in feats)  # zero cls
    assert labels == ColourData(12, 0).labels.tolist()

    model.backbone = MAEViT(
        arch=dict(embed_dims=16, num_layers=1, num_heads=2,
                  feedforward_channels=32), img_size=4, patch_size=2)
    for feat in ('mean', 'cls'):
        hook = KNNMonitorHook(data, data, feat=feat)
        assert hook._forward_kwargs(model.backbone) == dict(mask=None)
        feats, _ = hook._embed(model, hook._loader(runner, 'train'))
        assert len(feats) == 12 and feats[0].shape == (16, )


def _ddp_worker(rank, port, out_dir):
    import os

    import torch.distributed as dist
    from mmengine.logging import MessageHub
    from mmengine.visualization import Visualizer
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    torch.manual_seed(0)  # the same toy weights on both ranks
    model = ToyModel()
    runner = SimpleNamespace(
        model=model, seed=0, build_dataloader=Runner.build_dataloader,
        message_hub=MessageHub.get_instance(f'ddp{rank}'),
        visualizer=Visualizer.get_instance(f'ddp{rank}'),
        logger=SimpleNamespace(info=lambda msg: None))
    loader = dict(batch_size=2, collate_fn=dict(type='default_collate'))
    hook = KNNMonitorHook(dict(loader, dataset=ColourData(31, 0)),
                          dict(loader, dataset=ColourData(9, 1)), k=5)
    feats, labels = hook._embed(model, hook._loader(runner, 'train'))
    rows = hook._gather(list(zip(feats, labels)), 31)
    torch.save(dict(top1=hook.evaluate(runner, step=1),
                    labels=[r[1] for r in rows],
                    feats=torch.tensor(np.stack([r[0] for r in rows]))),
               f'{out_dir}/{rank}.pth')
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_ranks_gather_the_whole_set_and_agree(tmp_path):
    import socket

    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, str(tmp_path)), nprocs=2)
    res = [torch.load(tmp_path / f'{r}.pth') for r in range(2)]
    data = ColourData(31, 0)
    for r in res:  # every sample once, in dataset order, padding dropped
        assert r['labels'] == data.labels.tolist() and r['top1'] == 100.0
        expected = data.images.float().div(255).flatten(2).mean(2)
        assert torch.allclose(r['feats'], expected, atol=1e-5)


def test_start_score_deltas_summary_and_curve_png(tmp_path):
    """eval_at_start scores the untrained student once, later lines give the
    change against it, and CurvePlotHook draws both histories."""
    runner = toy_runner(tmp_path, 'knn_start',
                        dict(interval=0, eval_at_start=True),
                        [dict(type='CurvePlotHook', interval=1)])
    runner.train()

    hub = runner.message_hub
    assert hub.get_info('knn/start_top1') == 100.0
    # start, end of stage 1 (epoch 1), end of stage 2 (epoch 3)
    assert hub.get_info('knn/history') == [[0, 100.0], [1, 100.0],
                                           [3, 100.0]]
    assert len(hub.get_info('curves/loss')) == 3 * 2  # 2 iters / epoch
    with open(runner.logger.log_file) as f:
        log = f.read()
    assert log.count('random init, before the first step') == 1
    assert 'epoch 1, end of stage 1/2): knn/top1 100.00 (+0.00 vs. ' \
        '100.00 at random init)' in log
    assert 'epoch 3, end of stage 2/2)' in log
    assert ('kNN monitor summary (knn/top1): random init 100.00 | '
            'epoch 1 100.00 '
            '(+0.00) | epoch 3 100.00 (+0.00)') in log
    png = tmp_path / 'curves.png'
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


class CountingData(ColourData):
    """ColourData that counts how often an image is decoded."""

    def __init__(self, n, seed):
        super().__init__(n, seed)
        self.reads = 0

    def __getitem__(self, i):
        self.reads += 1
        return super().__getitem__(i)


def test_cache_data_reads_each_image_once():
    model = ToyModel()
    data = dict(batch_size=4, dataset=CountingData(12, 0),
                collate_fn=dict(type='default_collate'))
    runner = SimpleNamespace(model=model, seed=0,
                             build_dataloader=Runner.build_dataloader)
    for cache, reads in ((False, 24), (True, 12)):
        hook = KNNMonitorHook(data, data, cache_data=cache)
        loader = hook._loader(runner, 'train')
        first, _ = hook._embed(model, loader)
        again, _ = hook._embed(model, loader)
        assert loader.dataset.reads == reads
        assert all((a == b).all() for a, b in zip(first, again))


def test_centred_knn_ignores_a_shared_direction():
    """1-D features offset away from 0: after L2 normalisation every raw
    feature is +1 and the vote cannot tell the classes apart; centring on
    the bank mean gives back the sign that separates them."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 2
    feats = (5. + (labels * 2. - 1) + 0.3 * torch.randn(200, generator=g)
             )[:, None]
    bank, queries = feats[:100], feats[100:]
    raw = knn_classify(bank, labels[:100], queries, k=20)
    mean = bank.mean(0, keepdim=True)
    centred = knn_classify(bank - mean, labels[:100], queries - mean, k=20)
    assert (centred == labels[100:]).float().mean() == 1.0
    assert (raw == labels[100:]).float().mean() < 0.7


def test_centre_option_in_evaluate(monkeypatch):
    from mmengine.logging import MessageHub
    seen = []

    def recording_knn(bank, *args, **kwargs):
        seen.append(bank.mean(0))
        return knn_classify(bank, *args, **kwargs)

    monkeypatch.setattr(knn_mod, 'knn_classify', recording_knn)
    from mmengine.visualization import Visualizer
    lines = []
    runner = SimpleNamespace(
        model=ToyModel(), seed=0, build_dataloader=Runner.build_dataloader,
        message_hub=MessageHub.get_instance('centre_opt'),
        visualizer=Visualizer.get_instance('centre_opt'),
        logger=SimpleNamespace(info=lines.append))
    loader = dict(batch_size=4, collate_fn=dict(type='default_collate'))
    hook = KNNMonitorHook(dict(loader, dataset=ColourData(30, 0)),
                          dict(loader, dataset=ColourData(9, 1)), k=5,
                          centre=True, name='centred')
    assert hook.evaluate(runner, step=1) == 100.0
    # the vote saw the bank centred on its mean (the raw colour means are
    # far from 0)
    assert torch.allclose(seen[0], torch.zeros_like(seen[0]), atol=1e-6)
    assert runner.message_hub.get_info('knn/centred/history') == [[1, 100.0]]
    assert 'knn/centred/top1 100.00' in lines[0]
