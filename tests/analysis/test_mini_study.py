"""tools/reproduce/mini_study.py: sizing helpers, and ``--quick`` end to end
(slow: a few minutes on 2 cores)."""
import importlib.util
import json
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _study():
    path = osp.join(REPO, 'tools', 'reproduce', 'mini_study.py')
    spec = importlib.util.spec_from_file_location('_mini_study', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_equal_epochs_for_every_method_and_stage_bounds():
    ms = _study()
    for name, p in ms.PRESETS.items():
        for method in p['methods']:
            stages = ms.stage_bounds(p['epochs'], ms.METHODS[method][2])
            assert stages[-1] == p['epochs']
            assert all(b - a > p['warmup'] for a, b in zip(stages,
                                                           stages[1:]))
    assert ms.stage_bounds(12, 3) == [0, 4, 8, 12]
    with pytest.raises(ValueError):
        ms.stage_bounds(10, 3)
    assert ms.PRESETS['full']['seeds'] == [0, 1, 2]
    assert ms.dense_out_indices(12) == (3, 5, 7, 11)
    assert ms.dense_out_indices(6) == (1, 2, 3, 5)


def test_configs_follow_the_preset(tmp_path):
    ms = _study()
    import dbot_mm  # noqa: F401
    p = ms.PRESETS['quick']
    cfg, stages = ms.pretrain_cfg(p, 'dbot_3stage', 1, 'some/root',
                                  str(tmp_path), False)
    assert stages == [0, 2, 4, 6]
    boot = next(h for h in cfg.custom_hooks
                if h['type'] == 'StageBootstrapHook')
    assert boot['stages'] == stages
    assert boot['teacher_depths'] == [p['arch']['num_layers']] * 3
    assert cfg.model.teacher.arch == p['arch']
    assert cfg.train_cfg.max_epochs == p['epochs']
    assert cfg.randomness.seed == 1
    knn = next(h for h in cfg.custom_hooks
               if h['type'] == 'KNNMonitorHook')
    assert knn['eval_at_start']
    assert knn['train_dataloader']['dataset']['data_root'] == 'some/root'
    mae, _ = ms.pretrain_cfg(p, 'mae', 0, 'r', str(tmp_path), False)
    assert mae.model.type == 'MAE'
    assert mae.model.backbone.arch == p['arch']
    assert not any(h['type'] == 'StageBootstrapHook'
                   for h in mae.custom_hooks)
    for task in ('det', 'seg'):
        cfg = ms.task_cfg(task, ms.PRESETS['full'], 'x.pth',
                          dict(mosaic='m'), str(tmp_path), 0, False)
        assert cfg.model.backbone.init_cfg.checkpoint == 'x.pth'
        assert cfg.model.backbone.arch == ms.PRESETS['full']['arch']


@pytest.mark.slow
def test_quick_mode_end_to_end(tmp_path):
    ms = _study()
    report = tmp_path / 'report.md'
    out = ms.main([
        '--quick', '--data-root', str(tmp_path / 'data'), '--work-dir',
        str(tmp_path / 'work'), '--report', str(report)
    ])
    text = report.read_text()
    for label in ('random init', 'MAE (pixel target)',
                  'random teacher, 1 stage', 'dBOT, 2 stages',
                  'dBOT, 3 stages', 'bbox mAP', 'mIoU'):
        assert label in text
    for png in ('knn_curve.png', 'attention_distance.png',
                'singular_values.png'):
        assert osp.getsize(osp.join(out['fig_dir'], png)) > 1000
    assert len(out['results']) == 4
    p = ms.PRESETS['quick']
    for r in out['results']:
        assert 0 <= r['knn'] <= 100 and 0 <= r['linear'] <= 100
        # monitor: the untrained student, every `knn_interval` epochs and
        # every stage end
        expected = sorted({0, *r['stages'][1:], *range(
            0, p['epochs'] + 1, p['knn_interval'])})
        assert [e for e, _ in r['knn_curve']] == expected
        assert osp.isfile(r['checkpoint'])
    assert set(out['tasks']) == {('det', 'pretrained'),
                                 ('det', 'random_init'),
                                 ('seg', 'pretrained'),
                                 ('seg', 'random_init')}
    assert all('coco/bbox_mAP' in v for k, v in out['tasks'].items()
               if k[0] == 'det')
    summary = json.loads((tmp_path / 'work' / 'summary.json').read_text())
    assert summary['preset'] == 'quick'
    # a second call reuses every finished run
    again = ms.main([
        '--quick', '--data-root', str(tmp_path / 'data'), '--work-dir',
        str(tmp_path / 'work'), '--report', str(report), '--no-transfer'
    ])
    assert [r['knn'] for r in again['results']] == \
        [r['knn'] for r in out['results']]


def test_report_takes_in_the_hand_written_summary(tmp_path):
    """The reading of the results (``summary.md`` beside the figures) is
    carried into every rewrite of the report, right after its first line;
    without one the report has no such section."""
    ms = _study()
    p = ms.PRESETS['quick']
    blocks = p['arch']['num_layers']

    def run(method, seed):
        return dict(method=method, seed=seed, knn=60. + seed,
                    linear=70. + seed, stages=[0, p['epochs']],
                    knn_curve=[[0, 50.], [p['epochs'], 60.]],
                    singular_values=[1., .5, .25], train_seconds=60.,
                    attention_distance=[[8., 9.]] * blocks)

    results = [run(m, s) for m in p['methods'] for s in (0, 1)]
    inits = [run('random_init', s) for s in (0, 1)]
    machine = dict(cpu='cpu', cores='2', torch_threads='1', torch='t',
                   python='3', load_at_start='0')
    fig_dir = tmp_path / 'figures'
    fig_dir.mkdir()

    def render(name):
        path = tmp_path / name
        ms.write_report(str(path), p, 'quick', results, inits, {}, 'MAE',
                        {'pretrain': 60.}, machine, str(fig_dir), 'cmd')
        return path.read_text()

    plain = render('plain.md')
    assert 'What came out' not in plain
    (fig_dir / 'summary.md').write_text(
        '## What came out\n\n1. **A finding.**\n')
    text = render('with.md')
    generated = plain.split('\n')[2]
    assert generated.startswith('Generated by')
    assert text == plain.replace(
        generated + '\n\n',
        generated + '\n\n## What came out\n\n1. **A finding.**\n\n', 1)
