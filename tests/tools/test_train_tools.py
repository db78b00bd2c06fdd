"""tools/train.py, tools/test.py flags and tools/dist_train.sh on CPU."""
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(ROOT, 'configs/pretrain/dbot_demo_fashion-mnist.py')
VITB = osp.join(ROOT, 'configs/pretrain/dbot_vitb.py')
FASHION_MNIST_SRC = '/usr/share/datasets/fashion-mnist'
FP32_CFG = osp.join(ROOT, 'configs/reproduce/mini-study_dbot_fashion-mnist.py')


def merged(tool, argv):
    args = tool.parse_args(argv)
    return tool.merge_args(Config.fromfile(args.config), args)


def test_train_defaults(train_tool):
    cfg = merged(train_tool, [DEMO])
    assert cfg.work_dir == osp.join('work_dirs', 'dbot_demo_fashion-mnist')
    assert cfg.launcher == 'none' and not cfg.resume
    # the demo ships bf16 autocast (twice the fp32 step on CPU)
    assert cfg.optim_wrapper.type == 'AutocastOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'


def test_train_flags(train_tool, tmp_path):
    ckpt = tmp_path / 'epoch_3.pth'
    ckpt.write_bytes(b'')
    cfg = merged(train_tool, [
        DEMO, '--work-dir',
        str(tmp_path), '--resume',
        str(ckpt), '--amp', '--launcher', 'pytorch', '--cfg-options',
        'train_dataloader.batch_size=8', 'randomness.seed=5'
    ])
    assert cfg.work_dir == str(tmp_path) and cfg.launcher == 'pytorch'
    assert cfg.resume and cfg.load_from == str(ckpt)
    # the demo is already bf16 autocast: --amp keeps it
    assert cfg.optim_wrapper.type == 'AutocastOptimWrapper'
    assert cfg.train_dataloader.batch_size == 8 and cfg.randomness.seed == 5

    # an fp32 config gets the wrapper of the device and a dynamic scale
    cfg = merged(train_tool, [FP32_CFG, '--amp'])
    assert cfg.optim_wrapper.type == ('AmpOptimWrapper' if
                                      torch.cuda.is_available() else
                                      'AutocastOptimWrapper')
    assert cfg.optim_wrapper.loss_scale == 'dynamic'

    cfg = merged(train_tool, [VITB, '--resume', '--amp', 'bf16'])
    assert cfg.resume and cfg.load_from is None  # latest in work_dir
    # the paper config's AmpOptimWrapper is kept on GPU; it can't run on CPU
    assert cfg.optim_wrapper.type == ('AmpOptimWrapper' if
                                      torch.cuda.is_available() else
                                      'AutocastOptimWrapper')
    assert cfg.optim_wrapper.dtype == 'bfloat16'


def test_train_missing_checkpoint(train_tool):
    # a ConfigCheckError: one line from the command line
    with pytest.raises(train_tool.ConfigCheckError,
                       match='^--resume: checkpoint not found: no/such.pth$'):
        merged(train_tool, [DEMO, '--resume', 'no/such.pth'])


def test_test_tool_checks_inputs(tmp_path, tool_loader):
    tool = tool_loader('test')
    args = tool.parse_args([DEMO, 'missing.pth'])
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        tool.merge_args(Config.fromfile(DEMO), args)
    ckpt = tmp_path / 'x.pth'
    ckpt.write_bytes(b'')
    args = tool.parse_args([DEMO, str(ckpt), '--work-dir', str(tmp_path)])
    with pytest.raises(ValueError, match='no test_dataloader'):
        tool.merge_args(Config.fromfile(DEMO), args)


def run_script(*argv, env=None, timeout=60):
    full_env = dict(os.environ, PYTHON=sys.executable, **(env or {}))
    return subprocess.run(['bash', *argv],
                          cwd=ROOT,
                          env=full_env,
                          capture_output=True,
                          text=True,
                          timeout=timeout)


@pytest.mark.parametrize('argv,msg', [
    ((), 'usage'),
    (('cfg.py', 'two'), 'GPUS must be a positive integer'),
])
def test_dist_train_usage(argv, msg):
    result = run_script('tools/dist_train.sh', *argv)
    assert result.returncode == 2 and msg in result.stderr


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(
    not osp.isdir(FASHION_MNIST_SRC), reason='dataset-fashion-mnist missing')
def test_dist_train_two_cpu_processes(tmp_path):
    """`tools/dist_train.sh <demo config> 2` trains with two gloo ranks."""
    from dbot_mm.datasets import convert_fashion_mnist
    data = tmp_path / 'fm'
    convert_fashion_mnist(
        str(data), src=FASHION_MNIST_SRC, num_train=40, num_val=20,
        pad_to=32)
    cfg_file = tmp_path / 'tiny.py'
    cfg_file.write_text(f"""_base_ = '{DEMO}'
from dbot_mm.engine.schedules import stage_lr_schedulers

stages = [0, 1, 2]
train_dataloader = dict(batch_size=4, dataset=dict(data_root='{data}'))
param_scheduler = stage_lr_schedulers(stages, warmup_epochs=0)
train_cfg = dict(max_epochs=2)
custom_hooks = [
    dict(type='StageBootstrapHook', stages=stages, teacher_depths=[4, 4]),
    dict(type='EpochSeedHook'),
    dict(type='NonFiniteLossHook'),
]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
""")
    work_dir = tmp_path / 'work'
    result = run_script(
        'tools/dist_train.sh', str(cfg_file), '2', '--work-dir',
        str(work_dir), env=dict(PORT=str(free_port())), timeout=300)
    log = result.stdout + result.stderr
    (tmp_path / 'dist_train.log').write_text(log)
    assert result.returncode == 0, log[-3000:]
    assert 'gloo' in result.stderr
    assert 'Distributed training: True' in log
    assert 'dBOT stage 2/2 begins at epoch 1' in log
    # 40 images / (2 ranks x 4) = 5 iterations per epoch
    assert 'Epoch(train) [1][5/5]' in log
    ckpt = torch.load(
        work_dir / 'epoch_2.pth', map_location='cpu', weights_only=False)
    assert int(ckpt['state_dict']['stage']) == 1


def test_dist_test_usage():
    result = run_script('tools/dist_test.sh', 'cfg.py')
    assert result.returncode == 2 and 'usage' in result.stderr
