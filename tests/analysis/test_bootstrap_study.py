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
    assert [len(e) for _, _, e in study.ROWS.values()] == [1, 2, 3, 1]


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
    assert '| 3 | – | – | – | 30.0 ± 1.0 / 29.2 ± 1.0 | +0.8 ± 0.7 | ' \
        'within noise |' in row


@pytest.mark.parametrize('xs,verdict', [([1., 1.2, 0.9], 'higher'),
                                        ([1., -1., 0.5], 'within noise'),
                                        ([2.], 'one seed: not resolved')])
def test_delta(xs, verdict):
    assert report._delta(xs)[1] == verdict
