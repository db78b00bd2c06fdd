"""Evaluate a checkpoint with a config's test loop (classification, det, seg).

    python tools/test.py CONFIG CHECKPOINT [--out results.pkl]
    tools/dist_test.sh CONFIG CHECKPOINT 8 [args]
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.evaluator import DumpResults  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import dbot_mm  # noqa: E402,F401  (registers models, hooks, schedulers)
from dbot_mm.utils.cli import run_cli  # noqa: E402
from dbot_mm.utils.config_checks import check_config  # noqa: E402
from dbot_mm.utils.safe_load import safe_load  # noqa: E402
from train import (USER_ERRORS, setup_cpu_distributed,  # noqa: E402
                   teardown_distributed)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a checkpoint.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='where the log and metrics go (default: '
        'work_dirs/<config name>)')
    parser.add_argument(
        '--out', help='also dump the raw predictions to this .pkl file')
    parser.add_argument(
        '--amp', action='store_true', help='mixed-precision inference')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, key=value')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg, args):
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    cfg.launcher = args.launcher
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.setdefault('test_cfg', dict())['fp16'] = True
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if cfg.get('test_dataloader') is None:
        raise ValueError(f'{args.config} has no test_dataloader / '
                         'test_evaluator to test with')
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = merge_args(Config.fromfile(args.config), args)
    # an unsafe or unreadable checkpoint: one line, before anything else
    safe_load(cfg.load_from, map_location='cpu', mmap=True)
    check_config(cfg, modes=('test', ))
    setup_cpu_distributed(cfg)
    runner = (RUNNERS.build(cfg)
              if 'runner_type' in cfg else Runner.from_cfg(cfg))
    if args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError('--out must be a .pkl file')
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    runner.test()
    teardown_distributed()


if __name__ == '__main__':
    run_cli(main, __file__, USER_ERRORS)  # a config / input error: one line
