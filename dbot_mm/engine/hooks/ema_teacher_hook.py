"""Moving-average teacher (SdAE): teacher <- m * teacher + (1 - m) * student.

The momentum follows the official SdAE schedule (``util/cosine_scheduler.py``
called from ``main_pretrain.py`` with ``niter_per_ep=1``): an optional
linear warmup from ``warmup_momentum`` to ``momentum`` over
``warmup_epochs`` entries, then a half cosine from ``momentum`` to
``final_momentum``; entry ``e`` of ``total`` (training epochs) is::

    final + (base - final) * (1 + cos(pi * (e - W) / (total - W))) / 2

The official loop updates the teacher after each epoch ``e`` (every
``ema_frequent`` epochs) with entry ``e``, or after every iteration of epoch
``e`` with the same entry (``--ema_op per_ite``). ``schedule_by='iter'``
instead indexes the same formula by iteration over ``max_iters``.

The teacher lives in the model's state dict, so checkpoints carry it and a
resumed run continues the average; the hook itself keeps no state (the
momentum follows from the epoch / iteration the runner restores).
"""
import math
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS


def ema_momentum(index: int, total: int, momentum: float,
                 final_momentum: float, warmup: int = 0,
                 warmup_momentum: float = 0.) -> float:
    """Entry ``index`` of the official ``cosine_scheduler`` of length
    ``total``."""
    if not 0 <= index < total:
        raise ValueError(f'momentum schedule index {index} outside '
                         f'[0, {total})')
    if index < warmup:
        if warmup == 1:  # np.linspace(start, base, 1) == [start]
            return float(warmup_momentum)
        return warmup_momentum + (momentum - warmup_momentum) * index / (
            warmup - 1)
    step, steps = index - warmup, total - warmup
    return final_momentum + 0.5 * (momentum - final_momentum) * (
        1 + math.cos(math.pi * step / steps))


@HOOKS.register_module()
class EMATeacherHook(Hook):
    """Update an EMA teacher (``EMATeacher``) from the student encoder.

    Args:
        momentum (float): Momentum at the start (official
            ``--momentum_teacher``). Defaults to 0.96.
        final_momentum (float): Momentum at the end (official
            ``--momentum_teacher_final``). Defaults to 0.99.
        update (str): ``'epoch'`` (after every ``interval``-th epoch,
            official ``--ema_op per_epoch``) or ``'iter'`` (after every
            ``interval``-th iteration, official ``per_ite`` with interval 1).
            Defaults to ``'epoch'``.
        interval (int): Epochs / iterations between updates (official
            ``--ema_frequent`` for epochs). Defaults to 1.
        schedule_by (str, optional): Index of the momentum schedule:
            ``'epoch'`` (the epoch, over ``max_epochs`` entries, as the
            official code in both modes) or ``'iter'`` (the iteration, over
            ``max_iters``). Defaults to ``'epoch'``.
        warmup_epochs (int): Entries of linear momentum warmup (official
            ``--momentum_teacher_warmup_ep``). Defaults to 0.
        warmup_momentum (float): Start of that warmup. Defaults to 0.
    """

    # After the model's step, before CheckpointHook (VERY_LOW) saves it.
    priority = 'NORMAL'

    def __init__(self,
                 momentum: float = 0.96,
                 final_momentum: float = 0.99,
                 update: str = 'epoch',
                 interval: int = 1,
                 schedule_by: Optional[str] = 'epoch',
                 warmup_epochs: int = 0,
                 warmup_momentum: float = 0.) -> None:
        if update not in ('epoch', 'iter'):
            raise ValueError(f"update must be 'epoch' or 'iter', got "
                             f'{update!r}')
        if schedule_by not in ('epoch', 'iter'):
            raise ValueError(f"schedule_by must be 'epoch' or 'iter', got "
                             f'{schedule_by!r}')
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        for name, value in (('momentum', momentum),
                            ('final_momentum', final_momentum),
                            ('warmup_momentum', warmup_momentum)):
            if not 0. <= value <= 1.:
                raise ValueError(f'{name} must be in [0, 1], got {value}')
        self.momentum = momentum
        self.final_momentum = final_momentum
        self.update = update
        self.interval = interval
        self.schedule_by = schedule_by
        self.warmup_epochs = warmup_epochs
        self.warmup_momentum = warmup_momentum

    def momentum_at(self, runner) -> float:
        """Momentum for the update that ends the current epoch / iter."""
        if self.schedule_by == 'epoch':
            index, total = runner.epoch, runner.max_epochs
        else:
            index, total = runner.iter, runner.max_iters
        return ema_momentum(index, total, self.momentum, self.final_momentum,
                            self.warmup_epochs, self.warmup_momentum)

    def _step(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        momentum = self.momentum_at(runner)
        model.ema_update_teacher(momentum)
        runner.message_hub.update_scalar('train/ema_momentum', momentum)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        # runner.iter / runner.epoch are still those of the finished iter.
        if self.update == 'iter' and self.every_n_train_iters(
                runner, self.interval):
            self._step(runner)

    def after_train_epoch(self, runner) -> None:
        if self.update == 'epoch' and self.every_n_epochs(
                runner, self.interval):
            self._step(runner)
