"""Train (pre-train, fine-tune) a dbot_mm config with the mmengine Runner.

    python tools/train.py configs/pretrain/dbot_demo_fashion-mnist.py
    python tools/train.py CONFIG --resume              # latest in work dir
    python tools/train.py CONFIG --resume work_dirs/x/epoch_8.pth
    tools/dist_train.sh CONFIG 8 [args]                # torchrun, 8 processes
"""
import argparse
import os
import os.path as osp
import sys

# Runnable from a checkout without `pip install -e .`.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import dbot_mm  # noqa: E402,F401  (registers models, hooks, schedulers)
from dbot_mm.engine.hooks.non_finite_loss_hook import \
    NonFiniteLossError  # noqa: E402
from dbot_mm.utils.checkpoint_io import (  # noqa: E402
    find_latest_valid_checkpoint, is_complete_checkpoint)
from dbot_mm.utils.cli import run_cli  # noqa: E402
from dbot_mm.utils.config_checks import (ConfigCheckError,  # noqa: E402
                                         check_checkpoint_fits, check_config,
                                         check_train_dataloader,
                                         describe_build_error)
from dbot_mm.utils.safe_load import (CheckpointFormatError,  # noqa: E402
                                     UnsafeCheckpointError, safe_load)

AMP_DTYPES = {'fp16': 'float16', 'bf16': 'bfloat16'}
# Errors that are the user's input, not a crash: one line, no traceback.
USER_ERRORS = (ConfigCheckError, UnsafeCheckpointError, CheckpointFormatError,
               NonFiniteLossError)
AMP_WRAPPERS = ('AmpOptimWrapper', 'AutocastOptimWrapper')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a dbot_mm config.')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--work-dir', help='where logs and checkpoints go (default: '
        'work_dirs/<config name>)')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        help='resume from this checkpoint, or with no value from the latest '
        'checkpoint in the work dir')
    parser.add_argument(
        '--amp',
        nargs='?',
        const='config',
        choices=['config', 'fp16', 'bf16'],
        help='mixed precision (AmpOptimWrapper; on CPU AutocastOptimWrapper); '
        'optionally the dtype, else '
        "the config's optim_wrapper.dtype (fp16 if unset)")
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the LR by (total batch size / auto_scale_lr.'
        'base_batch_size)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, key=value (e.g. '
        'train_dataloader.batch_size=64 "optim_wrapper.dtype=bfloat16")')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher (dist_train.sh uses pytorch, slurm_train.sh '
        'slurm)')
    # torch.distributed.launch passes --local-rank (torch>=2) or --local_rank
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg, args):
    """Apply the command-line flags to ``cfg`` (flags win, --cfg-options
    last)."""
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp is not None:
        if cfg.optim_wrapper.get('type') not in AMP_WRAPPERS:
            # mmengine's AmpOptimWrapper needs a GPU; dbot_mm's
            # AutocastOptimWrapper also runs CPU bf16.
            cfg.optim_wrapper.type = ('AmpOptimWrapper'
                                      if torch.cuda.is_available() else
                                      'AutocastOptimWrapper')
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        elif (cfg.optim_wrapper.type == 'AmpOptimWrapper'
              and not torch.cuda.is_available()):
            cfg.optim_wrapper.type = 'AutocastOptimWrapper'  # CPU run
        if args.amp in AMP_DTYPES:
            cfg.optim_wrapper.dtype = AMP_DTYPES[args.amp]
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise ConfigCheckError(
                f'--resume: checkpoint not found: {args.resume}')
        cfg.resume, cfg.load_from = True, args.resume
    if args.cfg_options:
        check_option_keys(cfg, args.cfg_options)
        cfg.merge_from_dict(args.cfg_options)
    if args.auto_scale_lr:
        scale = dict(cfg.get('auto_scale_lr') or {})
        if not scale.get('base_batch_size'):
            raise ConfigCheckError(
                '--auto-scale-lr: the config has no auto_scale_lr.'
                'base_batch_size, the total batch size its learning rate is '
                'set for; add --cfg-options auto_scale_lr.base_batch_size=N '
                '(or auto_scale_lr = dict(base_batch_size=N) to the config).')
        scale['enable'] = True
        cfg.auto_scale_lr = scale
    return cfg


# Top-level keys mmengine's Runner (and FlexibleRunner) reads besides the
# ones a config already has; --cfg-options may add these, nothing else.
RUNNER_KEYS = {
    'model', 'work_dir', 'train_dataloader', 'val_dataloader',
    'test_dataloader', 'train_cfg', 'val_cfg', 'test_cfg', 'auto_scale_lr',
    'optim_wrapper', 'param_scheduler', 'val_evaluator', 'test_evaluator',
    'default_hooks', 'custom_hooks', 'data_preprocessor', 'load_from',
    'resume', 'launcher', 'env_cfg', 'log_processor', 'log_level',
    'visualizer', 'default_scope', 'randomness', 'experiment_name',
    'compile', 'model_wrapper_cfg', 'custom_imports', 'runner_type',
    'find_unused_parameters', 'strategy', 'cfg', 'sync_bn',
    'activation_checkpointing', 'efficient_conv_bn_eval'
}


def check_option_keys(cfg, options):
    """A misspelt top-level key in --cfg-options would become a new key
    nobody reads (``optim_wraper.optimizer.lr=...`` trains at the config's
    lr); refuse it, suggesting the closest existing key. A variable of the
    config file (``stages``, ``data_root``) was used while the file was
    parsed; overriding it changes nothing, so it is refused too."""
    import difflib
    known = set(cfg.keys()) | RUNNER_KEYS
    for option in options:
        top = option.split('.')[0]
        if top in RUNNER_KEYS:
            continue
        if top in known:
            raise ConfigCheckError(
                f'--cfg-options {option}: {top!r} is a variable of the '
                'config file, used while the file was read; overriding it '
                'here changes nothing. Override the keys built from it '
                '(e.g. custom_hooks.0.stages, train_dataloader.dataset.'
                'data_root) or edit the config.')
        close = difflib.get_close_matches(top, sorted(known), n=1)
        hint = f'; did you mean {close[0]!r}?' if close else ''
        raise ConfigCheckError(
            f'--cfg-options {option}: the config has no key {top!r} and '
            f'the runner does not read one{hint}')


def check_resume_file(resume):
    """An explicit ``--resume FILE`` must be a complete checkpoint."""
    if resume in (None, 'auto') or not resume.endswith('.pth'):
        return
    if not is_complete_checkpoint(resume):
        raise ConfigCheckError(
            f'--resume: {resume} is not a complete checkpoint (truncated by '
            'a crash?); pass an earlier one, or `--resume` alone to pick the '
            'newest complete one.')


def setup_cpu_distributed(cfg):
    """Let a launcher start CPU-only processes (gloo), for tests and demos.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` and wraps the
    model with ``device_ids=[LOCAL_RANK]``; both fail without CUDA. Starting
    the process group here makes the Runner skip its own init, and
    ``device_ids=None`` is what DDP expects for a CPU module.
    """
    if cfg.launcher == 'none' or torch.cuda.is_available():
        return
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    env_cfg = cfg.setdefault('env_cfg', dict())
    env_cfg.setdefault('dist_cfg', dict())['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def teardown_distributed():
    """Leave the process group before exit; a gloo group left to the
    interpreter's shutdown can abort the process (SIGABRT) after training."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def checkpoint_to_load(cfg):
    """(file, option) that the run will load: the --resume file, the newest
    complete checkpoint of the work dir, or load_from; (None, None)."""
    if cfg.get('resume'):
        path = cfg.get('load_from') or find_latest_valid_checkpoint(
            cfg.work_dir)
        return path, '--resume'
    return cfg.get('load_from'), 'load_from'


def build(cfg):
    """Build the runner and its train loop. A config mistake raised on the
    way (an unknown type, a misspelt argument, a value a module refuses) is
    reported as one line naming the key (DBOT_MM_TRACEBACK=1: traceback)."""
    try:
        runner = (RUNNERS.build(cfg)
                  if 'runner_type' in cfg else Runner.from_cfg(cfg))
        check_train_dataloader(runner)  # a data set smaller than a batch
        model = getattr(runner.model, 'module', runner.model)
        for hook in runner.hooks:  # e.g. teacher_depths vs the teacher
            if hasattr(hook, 'check_model') and \
                    isinstance(model, torch.nn.Module):  # FlexibleRunner:
                hook.check_model(model)  # built (and checked) in train()
    except USER_ERRORS:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, OSError,
            AssertionError) as e:
        if os.environ.get('DBOT_MM_TRACEBACK'):
            raise
        raise ConfigCheckError(
            f'{describe_build_error(cfg, e)} (building from '
            f'{cfg.filename}; DBOT_MM_TRACEBACK=1 shows the traceback)'
        ) from e
    return runner


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = merge_args(Config.fromfile(args.config), args)
    except (FileNotFoundError, SyntaxError, KeyError, ValueError) as e:
        if isinstance(e, ConfigCheckError):
            raise
        raise ConfigCheckError(
            f'{args.config}: {type(e).__name__}: {e}') from e
    # Missing / empty data, wrong checkpoints and stage lists: one message
    # naming the key and the file, before anything is built.
    check_config(cfg, modes=('train', ))
    check_resume_file(args.resume)
    # An unsafe or broken checkpoint is refused before anything is built
    # (memory-mapped: keys and shapes only) ...
    path, option = checkpoint_to_load(cfg)
    ckpt = None
    if path and not str(path).startswith(('http://', 'https://')):
        ckpt = safe_load(path, map_location='cpu', mmap=True)
    setup_cpu_distributed(cfg)
    runner = build(cfg)
    if ckpt is not None and isinstance(runner.model, torch.nn.Module):
        # ... and one of another width here, not by a segfault in the first
        # optimizer step
        check_checkpoint_fits(runner.model, path, option, ckpt)
    del ckpt
    runner.train()
    teardown_distributed()


if __name__ == '__main__':
    run_cli(main, __file__, USER_ERRORS)  # a config / input error: one line
