"""Stop on a non-finite loss before anything is written from a broken state."""
import os.path as osp

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS


class NonFiniteLossError(RuntimeError):
    """Training produced a non-finite loss or non-finite weights."""


def _last_checkpoint(work_dir: str) -> str:
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            return f.read().strip() or 'none'
    return 'none'


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise on a NaN/Inf loss (as the official code exits) with the details.

    Runs after every iteration, before ``ParamSchedulerHook``, ``LoggerHook``
    and ``CheckpointHook``, so the failing iteration is never checkpointed.
    Ranks agree through a one-element all-reduce, so every rank stops at the
    same iteration rather than the healthy ones saving a poisoned model.
    Weights can turn non-finite while the loss is still finite (an overflowing
    gradient without AMP); ``before_save_checkpoint`` therefore refuses to
    write non-finite parameters, keeping the last good checkpoint in place.
    """

    priority = 'NORMAL'

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        if not outputs:
            return
        values = {
            k: v.detach()
            for k, v in outputs.items() if isinstance(v, torch.Tensor)
        }
        finite = all(bool(torch.isfinite(v).all()) for v in values.values())
        if get_world_size() > 1:
            flag = torch.tensor(float(finite))
            all_reduce(flag, op='min')
            finite = bool(flag.item())
        if finite:
            return
        parts = ', '.join(f'{k}={v.float().mean().item():.6g}'
                          for k, v in values.items())
        raise NonFiniteLossError(
            f'Non-finite loss at epoch {runner.epoch + 1}, iteration '
            f'{runner.iter + 1} (batch {batch_idx + 1} of the epoch) on '
            f'rank {runner.rank}: {parts or "(non-finite on another rank)"}. '
            'Training stopped before this state could be checkpointed; the '
            f'last checkpoint is {_last_checkpoint(runner.work_dir)}.')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        named = [(n, p.detach()) for n, p in model.named_parameters()]
        if not named:
            return
        # One float64 sum per tensor: NaN and +-Inf survive it, overflow
        # cannot happen, and a single check keeps it to one host sync.
        sums = torch.stack([p.sum(dtype=torch.float64) for _, p in named])
        if bool(torch.isfinite(sums).all()):
            return
        bad = [n for (n, _), ok in zip(named, torch.isfinite(sums)) if not ok]
        # Called from after_train_epoch (runner.epoch is still the 0-based
        # index of the finished epoch, runner.iter the iterations done):
        # counted 1-based like the loss message and the checkpoint files.
        raise NonFiniteLossError(
            f'Refusing to save a checkpoint at the end of epoch '
            f'{runner.epoch + 1} (iteration {runner.iter}): non-finite '
            'parameters '
            f'{", ".join(bad[:5])}{" ..." if len(bad) > 5 else ""}. '
            'Training stopped; the last checkpoint is '
            f'{_last_checkpoint(runner.work_dir)}.')
