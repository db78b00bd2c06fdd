"""tools/reproduce/bootstrap_study.py: the rows share one budget, the configs
say what each row is, and the report's verdicts follow the paired numbers."""
import json
import os.path as osp
import sys
from itertools import accumulate

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools', 'reproduce'))

import bootstrap_report as report  # noqa: E402
import bootstrap_study as study  # noqa: E402
import bootstrap_transfer as transfer  # noqa: E402


def test_every_row_has_the_same_budget():
    assert {sum(e) for _, _, e in study.ROWS.values()} == {
        study.TOTAL_EPOCHS}
    assert [len(e) for _, _, e in study.ROWS.values()] == [1, 2, 3, 1, 3]
    assert set(study.SHIFT) < set(study.ROWS)


def test_row_configs(tmp_path):
    import dbot_mm  # noqa: F401
    paths = (str(tmp_path / 'fm'), str(tmp_path / 'digits'))
    cfg, stages, _ = study.pretrain_cfg('dbot_2stage', 1, str(tmp_path),
                                        *paths)
    assert stages == [0, 8, 15] and cfg.train_cfg.max_epochs == 15
    assert cfg.randomness.seed == 1
    boot = next(h for h in cfg.custom_hooks
                if h['type'] == 'StageBootstrapHook')
    assert boot['stages'] == [0, 8, 15]
    fm, digits = [h for h in cfg.custom_hooks
                  if h['type'] == 'KNNMonitorHook']
    assert fm['interval'] == 1 and digits['interval'] == 0  # every epoch
    mae, _, _ = study.pretrain_cfg('mae', 0, str(tmp_path), *paths)
    assert mae.model.type == 'MAE'
    assert mae.model.backbone.arch == cfg.model.backbone.arch
    assert not any(h['type'] == 'StageBootstrapHook'
                   for h in mae.custom_hooks)
    assert mae.optim_wrapper == cfg.optim_wrapper  # same optimizer, bf16
    # the Runner fills in the config's normalising data preprocessor
    assert 'data_preprocessor' not in mae.model
    assert mae.data_preprocessor == cfg.data_preprocessor


def test_transfer_settings_change_one_thing(tmp_path):
    import dbot_mm  # noqa: F401
    base = transfer.setting('base')
    for name in transfer.SETTINGS:
        s = transfer.setting(name)
        changed = {k for k in s if s[k] != base[k]} - {'det_epochs'}
        assert len(changed) == (0 if name == 'base' else 1), name
    s = transfer.setting('low-data')
    # as many iterations as base: 4 x 600 scenes = 16 x 150
    assert s['det_epochs'] * s['num_train'] == (
        base['det_epochs'] * base['num_train'])
    cfg = transfer.task_cfg('seg', transfer.setting('no-layer-decay'),
                            None, str(tmp_path), str(tmp_path / 'w'), 2)
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 1.0
    assert cfg.train_dataloader.dataset.indices == 600
    cfg = transfer.task_cfg('det', s, 'x.pth', str(tmp_path),
                            str(tmp_path / 'w'), 2)
    assert cfg.train_dataloader.dataset.indices == 150
    assert cfg.train_cfg.max_epochs == 16
    assert cfg.model.backbone.init_cfg.checkpoint == 'x.pth'
    assert cfg.model.backbone.arch == transfer.ARCH


def _write(path, res):
    path.mkdir(parents=True)
    (path / 'result.json').write_text(json.dumps(res))


def test_report_verdicts(tmp_path, monkeypatch):
    monkeypatch.setattr(report, 'FIG_DIR', str(tmp_path))
    pre = tmp_path / 'work' / 'pretrain'
    key = json.dumps(study.row_recipe('random_teacher'), sort_keys=True)
    for seed in range(3):
        _write(pre / f'random_init_seed{seed}',
               dict(row='random_init', seed=seed, knn=60., linear=77.))
        for row, gain in (('random_teacher', 0.), ('dbot_3stage', 2.)):
            stages = list(accumulate(study.ROWS[row][2], initial=0))
            mon = [[0, 55.]] + [[e, 60. + gain + 0.1 * e]
                                for e in range(1, 16)]
            _write(pre / f'{row}_seed{seed}',
                   dict(row=row, seed=seed, key=key, stages=stages,
                        monitor=mon, knn=70. + gain + seed * .1,
                        linear=80. + gain + seed * .2, train_seconds=60.))
    text = report.pretrain_section(str(tmp_path / 'work'))
    assert '| dBOT, 3 stages | +2.0 ± 0.0 | +2.0 ± 0.0 | higher | higher |' \
        in text
    assert '| random init | -10.1 ± 0.1 | -3.2 ± 0.1 | lower | lower |' \
        in text
    assert '**true for every stage of every row**' in text
    assert osp.isfile(tmp_path / 'bootstrap_knn.png')

    tr = tmp_path / 'work' / 'transfer' / 'base'
    for seed, (a, b) in enumerate([(30., 28.), (31., 30.), (29., 29.5)]):
        for enc, v in (('dbot_3stage', a), ('random_init', b)):
            _write(tr / f'seg_{enc}_seed{seed}',
                   dict(task='seg', setting='base', encoder=enc, seed=seed,
                        mIoU=v))
    text = report.transfer_section(str(tmp_path / 'work'))
    row = next(line for line in text.splitlines()
               if line.startswith('| base |'))
    assert '| 0 | – | – | – | 3 | 30.0 ± 1.0 / 29.2 ± 1.0 | +0.8 ± 0.7 | ' \
        'within noise |' in row

    pr = tmp_path / 'work' / 'probe'
    pr.mkdir()
    for seed in range(2):
        for enc, m in (('random_init', 10.), ('dbot_3stage', 12. + seed)):
            for res in (64, 32):
                (pr / f'{enc}_seed{seed}_res{res}.json').write_text(
                    json.dumps(dict(encoder=enc, seed=seed, res=res, mIoU=m,
                                    object_acc=50. + m)))
    for seed in range(2):
        for enc, acc in (('random_init', 70.), ('dbot_3stage', 75. + seed)):
            (pr / f'layout_{enc}_seed{seed}.json').write_text(json.dumps(
                dict(encoder=enc, seed=seed, fm32=acc, pad64=acc - 1,
                     shift64=60., up64=acc)))
    text = report.transfer_section(str(tmp_path / 'work'))
    assert '| dBOT, 3 stages | 2 | 12.5 ± 0.7 | 12.5 ± 0.7 | +2.5 ± 0.5 | ' \
        '+2.5 ± 0.5 | 62.5 ± 0.7 | 62.5 ± 0.7 |' in text
    assert '| dBOT, 3 stages | 2 | 75.5 ± 0.7 | 74.5 ± 0.7 | 60.0 ± 0.0 | ' \
        '75.5 ± 0.7 | +5.5 ± 0.5 | +5.5 ± 0.5 | +0.0 ± 0.0 | +5.5 ± 0.5 |' \
        in text


@pytest.mark.parametrize('xs,verdict', [([1., 1.2, 0.9], 'higher'),
                                        ([1., -1., 0.5], 'within noise'),
                                        ([2.], 'one seed: not resolved')])
def test_delta(xs, verdict):
    assert report._delta(xs)[1] == verdict


def test_probe_labels_objects_and_miou(tmp_path):
    """Each patch takes its majority label; each object is pooled from the
    patches of its class; mIoU leaves the background out."""
    import numpy as np
    import torch
    from PIL import Image

    import bootstrap_probe as probe
    for sub in ('images', 'annotations'):
        (tmp_path / 'ade' / sub / 'training').mkdir(parents=True)
    seg = np.zeros((64, 64), np.uint8)
    seg[0:3, 0:4] = 7  # 12 of the first 4 x 4 patch's 16 pixels
    seg[8:16, 8:16] = 2  # one whole 8 x 8 patch of the 32 px grid
    Image.fromarray(seg).save(tmp_path / 'ade/annotations/training/a.png')
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(
        tmp_path / 'ade/images/training/a.jpg')
    x, y = probe.scenes(str(tmp_path), 'train', 64)
    assert x.shape == (1, 3, 64, 64) and y.shape == (256, )
    assert y[0] == 7 and y[1] == 0 and y[2 * 16 + 2] == 2
    assert y.bincount(minlength=11)[2] == 4
    x, y = probe.scenes(str(tmp_path), 'train', 32)
    assert x.shape == (1, 3, 32, 32) and y.shape == (64, )
    assert y[0] == 0 and y[8 + 1] == 2 and int((y > 0).sum()) == 1

    feats = torch.arange(64.).view(64, 1).repeat(1, 2)
    labels = torch.zeros(64, dtype=torch.long)
    labels[[3, 5]] = 4
    labels[10] = 1
    pooled, lab = probe.objects(feats, labels, 32)
    assert lab.tolist() == [1, 4] and pooled[:, 0].tolist() == [10., 4.]

    gt = torch.tensor([0, 1, 1, 2, 2, 0])
    pred = torch.tensor([0, 1, 0, 2, 2, 2])
    # class 1: 1 / 2; class 2: 2 / 3; background not counted
    assert probe.miou(pred, gt) == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)


def test_probe_layouts():
    """The layouts move the same pixels: padding keeps every item pixel,
    the shifted copy holds the item once, the black canvas is the
    normalised zero."""
    import torch

    import bootstrap_probe as probe
    x = torch.randn(3, 3, 32, 32)
    lay = probe.layouts(x, seed=0)
    assert set(lay) == set(probe.LAYOUTS)
    assert lay['fm32'] is x
    assert torch.equal(lay['pad64'][:, :, 16:48, 16:48], x)
    black = (0 - probe.MEAN[0]) / probe.STD[0]
    assert torch.all(lay['pad64'][:, :, :16] == black)
    for i in range(3):
        s = lay['shift64'][i, 0]
        ys, xs = torch.nonzero(s != black, as_tuple=True)
        dy, dx = int(ys.min()), int(xs.min())
        assert torch.equal(lay['shift64'][i, :, dy:dy + 32, dx:dx + 32],
                           x[i])
    assert lay['up64'].shape == (3, 3, 64, 64)


def test_probe_main_runs_both_probes(monkeypatch):
    """``probe`` runs the scene probe for every encoder and resolution, then
    the layout probe, skipping encoders whose pretraining has not run."""
    import types

    import torch

    import bootstrap_probe as probe
    import bootstrap_transfer
    import mini_study

    import dbot_mm.analysis
    calls = []
    monkeypatch.setattr(bootstrap_transfer, 'mosaic', lambda s, root: root)
    monkeypatch.setattr(probe, 'scenes', lambda root, split, res: split)
    monkeypatch.setattr(mini_study, 'read_split',
                        lambda root, split: (['f'] * 3, torch.zeros(3)))
    monkeypatch.setattr(dbot_mm.analysis, 'load_images',
                        lambda *a, **k: torch.zeros(3, 3, 32, 32))
    monkeypatch.setattr(probe, 'ready', lambda name, seed, wd:
                        name != 'dbot_3stage_shift')
    monkeypatch.setattr(probe, 'probe_one', lambda name, seed, res, *a:
                        calls.append(('scene', name, seed, res)))
    monkeypatch.setattr(probe, 'layout_probe', lambda name, seed, *a:
                        calls.append(('layout', name, seed)))
    args = types.SimpleNamespace(seeds=[0], work_dir='w', force=False)
    probe.main(args, ['data/fm'])
    scene = [c for c in calls if c[0] == 'scene']
    assert {c[1] for c in scene} == set(probe.ENCODERS) - {
        'dbot_3stage_shift'}
    assert len(scene) == len(probe.RESOLUTIONS) * (len(probe.ENCODERS) - 1)
    assert [c[1] for c in calls if c[0] == 'layout'] == [
        e for e in probe.LAYOUT_ENCODERS if e != 'dbot_3stage_shift']
