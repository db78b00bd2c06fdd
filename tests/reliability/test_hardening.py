"""Faults that used to be silent, wrong or a traceback (docs/reliability.md,
catalogue): a side hook never costs a stage, a checkpoint of another model
is refused, a command-line override cannot desynchronise the stage list,
and every user mistake is one line naming the key or the file."""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import dbot_mm  # noqa: F401
from dbot_mm.utils.checkpoint_io import find_latest_valid_checkpoint
from dbot_mm.utils.config_checks import (ConfigCheckError, check_config,
                                         check_stage_hooks)
from rel_helpers import ROOT, _env, make_image_folder, write_config

KNN = '''
def _knn(root, ann):
    return dict(batch_size=4, num_workers=0, dataset=dict(
        type='CustomDataset', data_root=root, ann_file=ann,
        data_prefix='train', pipeline=[
            dict(type='RobustLoadImageFromFile', on_error='raise'),
            dict(type='PackInputs')]))
custom_hooks.append(dict(type='KNNMonitorHook', interval=0, k=3,
                         train_dataloader=_knn('{root}', '{ann}'),
                         val_dataloader=_knn('{root}', 'meta/train.txt')))
'''


@pytest.fixture
def tiny(tmp_path):
    data = make_image_folder(str(tmp_path / 'data'), n=8)
    cfg = write_config(str(tmp_path / 'cfg.py'), data, stages=(0, 1, 2),
                       warmup=0)
    return data, cfg


def _cli(cfg, work_dir, *args):
    result = subprocess.run(
        [sys.executable, 'tools/train.py', cfg, '--work-dir', str(work_dir),
         *args], cwd=ROOT, env=_env(), capture_output=True, text=True,
        timeout=300)
    return result.returncode, result.stdout + result.stderr


def _one_line_error(rc, out):
    assert rc == 1 and 'Traceback' not in out, out
    last = out.strip().splitlines()[-1]
    assert last.startswith('train.py: error: '), out
    return last[len('train.py: error: '):]


# ---- the command line: refused with one line --------------------------------
def _width_48_checkpoint(tmp_path, cfg):
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    c = Config.fromfile(cfg)
    c.model.backbone.arch = dict(embed_dims=48, num_layers=2, num_heads=2,
                                 feedforward_channels=64)
    model = MODELS.build(c.model)
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=1)), path)
    return path


@pytest.mark.parametrize('case', [
    'stages', 'auto_scale_lr', 'typo', 'mask_ratio', 'resume_width',
    'load_from_text', 'variable'
])
def test_cli_refuses_with_one_line(tmp_path, tiny, case):
    data, cfg = tiny
    work = tmp_path / 'w'
    if case == 'stages':
        # the stage list shortened alone: the LR schedule would not follow
        cfg = write_config(str(tmp_path / 'cfg4.py'), data,
                           stages=(0, 2, 4), warmup=1)
        args = ['--cfg-options', 'train_cfg.max_epochs=2',
                'custom_hooks.0.stages=[0,1,2]',
                'custom_hooks.0.teacher_depths=[2,2]']
        expect = ('param_scheduler does not follow custom_hooks[0].stages '
                  '[0, 1, 2]: a scheduler starts at epoch 2, after the last '
                  'stage ends (train_cfg.max_epochs 2)')
    elif case == 'auto_scale_lr':
        args = ['--auto-scale-lr']
        expect = '--auto-scale-lr: the config has no auto_scale_lr.'
    elif case == 'typo':
        args = ['--cfg-options', 'optim_wraper.optimizer.lr=100.0']
        expect = ("--cfg-options optim_wraper.optimizer.lr: the config "
                  "has no key 'optim_wraper' and the runner does not read "
                  "one; did you mean 'optim_wrapper'?")
    elif case == 'variable':
        args = ['--cfg-options', 'stages=[0,1,2]']
        expect = ("--cfg-options stages: 'stages' is a variable of the "
                  'config file, used while the file was read; overriding it '
                  'here changes nothing.')
    elif case == 'mask_ratio':
        args = ['--cfg-options', 'model.backbone.mask_ratio=0.99']
        expect = ('model.backbone.mask_ratio (DBOTViT): ValueError: '
                  'mask_ratio=0.99 leaves no visible patch of the 16')
    elif case == 'resume_width':
        path = _width_48_checkpoint(tmp_path, cfg)
        args = ['--resume', path]
        expect = (f'--resume: {path} does not fit the model: ')
    else:
        path = str(tmp_path / 'notes.pth')
        with open(path, 'w') as f:
            f.write('not a checkpoint\n')
        args = ['--cfg-options', f'load_from={path}']
        expect = f'{path} is not a PyTorch checkpoint'
    message = _one_line_error(*_cli(cfg, work, *args))
    assert message.startswith(expect), message
    assert 'DBOT_MM_TRUSTED' not in message
    assert not glob.glob(str(work / '*.pth'))


def test_resume_needs_a_training_checkpoint_of_this_model(tmp_path, tiny):
    """A weights-only file (used to fail with KeyError: 'iter' deep in
    mmengine) and a checkpoint of another depth are refused."""
    from mmpretrain.registry import MODELS

    from dbot_mm.utils.config_checks import check_checkpoint_fits
    _, cfg = tiny
    init_default_scope('mmpretrain')
    c = Config.fromfile(cfg)
    model = MODELS.build(c.model)
    path = str(tmp_path / 'weights.pth')
    torch.save(dict(state_dict=model.state_dict()), path)
    with pytest.raises(ConfigCheckError, match=(
            f'^--resume: {path} is not a training checkpoint written by the '
            r'Runner \(no optimizer state or meta.iter\)')):
        check_checkpoint_fits(model, path, '--resume')
    check_checkpoint_fits(model, path, 'load_from')  # weights are enough
    c.model.backbone.arch.num_layers = 1
    c.model.teacher.depth = 1
    shallow = MODELS.build(c.model)
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(state_dict=shallow.state_dict(), optimizer={},
                    meta=dict(epoch=1, iter=2)), path)
    with pytest.raises(ConfigCheckError, match=(
            f'^--resume: {path} lacks .* parameters of the model, e.g. '
            '"backbone.layers.1.')):
        check_checkpoint_fits(model, path, '--resume')


def test_auto_scale_lr_is_applied_when_configured(train_tool, tiny,
                                                  tmp_path):
    _, cfg = tiny
    args = train_tool.parse_args([cfg, '--auto-scale-lr', '--work-dir',
                                  str(tmp_path / 'w'), '--cfg-options',
                                  'auto_scale_lr.base_batch_size=8'])
    merged = train_tool.merge_args(Config.fromfile(cfg), args)
    assert merged.auto_scale_lr == dict(base_batch_size=8, enable=True)
    runner = train_tool.build(merged)  # mmengine applies it: 1e-3 * 4 / 8
    wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.scale_lr(wrapper, runner.auto_scale_lr)
    assert {g['lr'] for g in wrapper.param_groups} == {1e-3 * 4 / 8}


# ---- user mistakes: one line naming the key or the file --------------------
MISTAKES = {
    'unknown type': ({'model.backbone.type': 'DBOTVIT'},
                     "model.backbone.type: 'DBOTVIT' is not a registered type"
                     " (registry mmpretrain::model) (did you mean "
                     "'DBOTViT'?)"),
    'misspelt argument': ({'model.backbone.mask_ration': 0.5},
                          "model.backbone.mask_ration: DBOTViT has no "
                          "argument 'mask_ration'"),
    'mask_ratio out of range': ({'model.backbone.mask_ratio': 1.5},
                                'model.backbone.mask_ratio (DBOTViT): '
                                'ValueError: mask_ratio must be in [0, 1)'),
    'teacher deeper than its arch': ({'model.teacher.depth': 5},
                                     'model.teacher.depth (ViTTeacher): '
                                     'ValueError: teacher depth=5 is outside'),
    'teacher_depths deeper than the teacher': (
        {'custom_hooks.0.teacher_depths': [2, 5]},
        'ValueError: `teacher_depths` [2, 5] needs a teacher with 5 blocks'),
    'stages not increasing': ({'custom_hooks.0.stages': [0, 2, 2]},
                              '`custom_hooks[0].stages` must be strictly '
                              'increasing'),
    'negative lr': ({'optim_wrapper.optimizer.lr': -1.0},
                    'optim_wrapper.optimizer.lr: must be a non-negative '
                    'number, got -1.0'),
    'zero std': ({'model.data_preprocessor.std': [64., 0., 64.]},
                 'model.data_preprocessor.std: [64.0, 0.0, 64.0] has a '
                 'value that is not positive'),
}


@pytest.mark.parametrize('name', list(MISTAKES))
def test_user_mistakes_name_the_key(train_tool, tmp_path, tiny, name):
    _, cfg = tiny
    options, expect = MISTAKES[name]
    args = [cfg, '--work-dir', str(tmp_path / 'w'), '--cfg-options']
    args += [f'{k}={v}'.replace(' ', '') for k, v in options.items()]
    with pytest.raises(ConfigCheckError) as e:
        train_tool.main(args)
    assert str(e.value).startswith(expect), str(e.value)
    assert '\n' not in str(e.value)


def test_bad_labels_and_empty_folder_name_the_file(tiny, tmp_path):
    data, cfg = tiny
    ann = osp.join(data, 'meta', 'train.txt')
    with open(ann, 'a') as f:
        f.write('b/extra.png two\n')
    with pytest.raises(ConfigCheckError, match=(
            f'^train_dataloader.dataset.ann_file: {ann} line 9: '
            "'b/extra.png two' has label 'two'; expected")):
        check_config(Config.fromfile(cfg))
    os.makedirs(tmp_path / 'empty' / 'train')
    c = Config.fromfile(cfg)
    c.train_dataloader.dataset.update(data_root=str(tmp_path / 'empty'),
                                      ann_file='')
    with pytest.raises(ConfigCheckError, match=(
            '^train_dataloader.dataset.data_prefix: '
            f'{tmp_path}/empty/train holds no files')):
        check_config(c)


def test_work_dir_that_is_a_file_or_read_only(tiny, tmp_path, monkeypatch):
    _, cfg = tiny
    c = Config.fromfile(cfg)
    c.work_dir = str(tmp_path / 'a_file')
    (tmp_path / 'a_file').write_text('')
    with pytest.raises(ConfigCheckError, match=(
            f'^work_dir: {tmp_path}/a_file is a file, not a directory')):
        check_config(c)
    c.work_dir = str(tmp_path / 'a_file' / 'sub')
    with pytest.raises(ConfigCheckError, match='cannot be created: '):
        check_config(c)

    import tempfile

    def read_only(*args, **kwargs):
        raise PermissionError(13, 'Permission denied')

    monkeypatch.setattr(tempfile, 'mkstemp', read_only)  # root ignores modes
    c.work_dir = str(tmp_path / 'ro')
    with pytest.raises(ConfigCheckError, match=(
            f'^work_dir: {tmp_path}/ro is not writable \\(in {tmp_path}\\): '
            'Permission denied')):
        check_config(c)


# ---- the stage list: one source of truth ------------------------------------
def _stage_cfg(tiny, tmp_path, boundaries=(0, 2, 4), **hook):
    data, _ = tiny
    cfg = write_config(str(tmp_path / 'cfg_s.py'), data, stages=boundaries,
                       warmup=1, extra=KNN.format(root=data,
                                                  ann='meta/train.txt'))
    c = Config.fromfile(cfg)
    c.custom_hooks[-1].update(hook)
    return c


def test_stage_list_drives_schedule_monitor_and_checkpoints(tiny, tmp_path):
    c = _stage_cfg(tiny, tmp_path)
    c.default_hooks.checkpoint.interval = 2
    check_stage_hooks(c)  # consistent as written
    c.custom_hooks[0].stages = [0, 1, 4]  # a different boundary
    with pytest.raises(ConfigCheckError, match=(
            r'^param_scheduler does not follow custom_hooks\[0\].stages '
            r'\[0, 1, 4\]: stage 2 \(from epoch 1\) does not restart the '
            r"LR like stage 1: \[\('StageCosineAnnealingLR', 0\), ")):
        check_stage_hooks(c)
    c.custom_hooks[0].stages = [0, 2, 4]
    c.param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True,
                              begin=0, end=4)]  # one cosine for all stages
    with pytest.raises(ConfigCheckError, match=(
            r'the scheduler over epochs \[0, 4\) runs across the stage '
            'boundary at epoch 2')):
        check_stage_hooks(c)
    c = _stage_cfg(tiny, tmp_path)
    c.param_scheduler = c.param_scheduler[:2]  # schedule ends at epoch 2
    with pytest.raises(ConfigCheckError, match='no LR scheduler restarts at '
                       r'the start of stage 2 \(epoch 2\)'):
        check_stage_hooks(c)
    c = _stage_cfg(tiny, tmp_path, stages=[0, 1, 4])
    with pytest.raises(ConfigCheckError, match=(
            r'^custom_hooks\[5\].stages \[0, 1, 4\] differs from '
            r'custom_hooks\[0\].stages \[0, 2, 4\]')):
        check_stage_hooks(c)
    c = _stage_cfg(tiny, tmp_path)
    c.default_hooks.checkpoint.interval = 3
    with pytest.raises(ConfigCheckError, match=(
            r'^default_hooks.checkpoint.interval=3 is longer than stage 1 '
            r'\[0, 2\) of custom_hooks\[0\].stages \[0, 2, 4\]: that stage '
            'would end without a checkpoint. Set --cfg-options '
            'default_hooks.checkpoint.interval=2')):
        check_stage_hooks(c)
    c.default_hooks.checkpoint.interval = 4  # only the final one: allowed
    check_stage_hooks(c)


def _configs():
    found = []
    for sub in ('pretrain', 'reproduce'):
        found += sorted(glob.glob(osp.join(ROOT, 'configs', sub, '**',
                                           '*.py'), recursive=True))
    return [osp.relpath(p, ROOT) for p in found]


@pytest.mark.parametrize('config', _configs())
def test_shipped_configs_pass_the_stage_checks(config):
    check_stage_hooks(Config.fromfile(osp.join(ROOT, config)))


# ---- the kNN monitor --------------------------------------------------------
def test_monitor_data_is_checked_before_the_first_step(tiny, tmp_path):
    data, _ = tiny
    cfg = write_config(str(tmp_path / 'cfg_k.py'), data, stages=(0, 1, 2),
                       warmup=0, extra=KNN.format(root=data,
                                                  ann='meta/train.txt'))
    c = Config.fromfile(cfg)
    missing = str(tmp_path / 'gone')
    c.train_dataloader.dataset.data_root = missing
    for key in ('train_dataloader', 'val_dataloader'):
        c.custom_hooks[5][key].dataset.data_root = missing
    with pytest.raises(ConfigCheckError, match=(
            '^train_dataloader.dataset.data_root: directory not found: '
            f'{missing} .*=PATH; the same path is also set in custom_hooks'
            r'\[5\].train_dataloader.dataset.data_root, custom_hooks\[5\].'
            'val_dataloader.dataset.data_root$')):
        check_config(c)
    c.train_dataloader.dataset.data_root = data
    with pytest.raises(ConfigCheckError, match=(
            r'^custom_hooks\[5\].train_dataloader.dataset.data_root: '
            'directory not found')):
        check_config(c)


def test_monitor_failure_never_costs_the_stage(train_tool, tiny, tmp_path):
    """The monitor's memory bank lists an image that is gone: scoring fails
    at the end of every stage; each stage's checkpoint is still written and
    the run completes."""
    data, _ = tiny
    with open(osp.join(data, 'meta', 'knn.txt'), 'w') as f:
        f.write('a/0.png 0\nb/1.png 1\na/404.png 0\n')
    cfg = write_config(str(tmp_path / 'cfg_f.py'), data, stages=(0, 1, 2),
                       warmup=0,
                       extra=KNN.format(root=data, ann='meta/knn.txt'))
    work = tmp_path / 'w'
    train_tool.main([cfg, '--work-dir', str(work)])
    assert osp.exists(work / 'epoch_1.pth')
    assert osp.exists(work / 'epoch_2.pth')
    log = open(glob.glob(str(work / '*' / '*.log'))[0]).read()
    assert log.count('kNN monitor (epoch 1) failed, no knn/top1 logged: '
                     'CorruptImageError: Cannot read image') == 1
    assert 'kNN monitor (epoch 2) failed' in log


def test_monitor_logs_no_accuracy_for_nan_weights(train_tool, tiny, tmp_path):
    from mmengine.hooks import Hook
    from mmpretrain.registry import HOOKS

    @HOOKS.register_module(force=True)
    class _PoisonStudent(Hook):
        priority = 'HIGHEST'

        def after_train_epoch(self, runner):
            with torch.no_grad():
                runner.model.backbone.cls_token.fill_(float('nan'))

    data, _ = tiny
    cfg = write_config(str(tmp_path / 'cfg_n.py'), data, stages=(0, 1),
                       warmup=0, extra=KNN.format(root=data,
                                                  ann='meta/train.txt') +
                       "custom_hooks.append(dict(type='_PoisonStudent'))\n")
    c = Config.fromfile(cfg)
    c.work_dir = str(tmp_path / 'w')
    c.default_hooks.checkpoint = None
    from mmengine.runner import Runner
    runner = Runner.from_cfg(c)
    runner.train()
    assert 'knn/top1' not in runner.message_hub.log_scalars
    log = open(runner.logger.log_file).read()
    assert "kNN monitor (epoch 1): the student's features are not finite" \
        in log
    assert 'knn/top1 ' not in log


# ---- resume ----------------------------------------------------------------
def test_copied_work_dir_resumes_from_its_own_files(tmp_path):
    first = tmp_path / 'run'
    os.makedirs(first)
    for epoch in (1, 2):
        torch.save({'w': torch.full((4, ), float(epoch))},
                   first / f'epoch_{epoch}.pth')
    (first / 'last_checkpoint').write_text(str(first / 'epoch_2.pth'))
    copy = tmp_path / 'copy'
    shutil.copytree(first, copy)
    assert find_latest_valid_checkpoint(str(copy)) == str(copy /
                                                          'epoch_2.pth')
    os.remove(copy / 'epoch_2.pth')  # the copy stopped earlier
    assert find_latest_valid_checkpoint(str(copy)) == str(copy /
                                                          'epoch_1.pth')
    # the original is untouched and still resumes from its own file
    assert find_latest_valid_checkpoint(str(first)) == str(first /
                                                           'epoch_2.pth')
