"""dBOT learning rate: warmup + half-cycle cosine, restarted every stage.

The official code (``util/lr_sched.py``) computes, at every iteration, the
fractional epoch ``e`` inside the current stage of length ``E`` and sets::

    lr = base * e / W                                     if e < W
    lr = base * (1 + cos(pi * (e - W) / (E - W))) / 2     otherwise

mmengine's ``LinearLR`` / ``CosineAnnealingLR`` are *chained*: each step
multiplies the LR the previous step left behind. After a cosine has taken the
LR to ~0, a second ``LinearLR`` can only multiply that ~0, so the warmup of
stage 2 would never come back up. The two schedulers below compute their value
from the base LR instead, so a stage can restart; per-stage ``begin``/``end``
do the rest. :func:`stage_lr_schedulers` writes the config dicts;
:func:`stage_recipe` adds the hooks of a staged run, so that a pretrain config
writes its stages once::

    param_scheduler, custom_hooks = stage_recipe(
        stages, teacher_depths, warmup_epochs=warmup_epochs)
"""
import math
from typing import List, Optional, Sequence, Tuple

from mmengine.optim.scheduler import (CosineAnnealingParamScheduler,
                                      LinearParamScheduler)
from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmpretrain.registry import PARAM_SCHEDULERS

__all__ = [
    'StageLinearLR', 'StageCosineAnnealingLR', 'stage_lr_schedulers',
    'stage_recipe', 'official_stage_recipe', 'monitored_stage_recipe',
    'finetune_schedule',
    'step_lr_schedulers', 'check_stages'
]


@PARAM_SCHEDULERS.register_module()
class StageLinearLR(LRSchedulerMixin, LinearParamScheduler):
    """Linear warmup from ``start_factor * base``, computed from the base LR.

    Unlike mmengine's ``LinearLR`` the factor reaches ``end_factor`` at
    ``end`` (the first step *after* the warmup), as the official
    ``lr * epoch / warmup`` does, and ``start_factor=0`` is allowed.
    """

    def _get_value(self):
        # Closed form, independent of the LR left by earlier schedulers.
        progress = self.last_step / (self.end - self.begin)
        factor = self.start_factor + (self.end_factor -
                                      self.start_factor) * progress
        return [base * factor for base in self.base_values]


@PARAM_SCHEDULERS.register_module()
class StageCosineAnnealingLR(LRSchedulerMixin, CosineAnnealingParamScheduler):
    """Half-cycle cosine from the base LR to ``eta_min`` over ``T_max`` steps.

    Closed form rather than mmengine's chained recursion, so it starts at
    exactly the base LR whatever the warmup before it left, and accumulates no
    rounding over ~10^6 iterations.
    """

    def _get_value(self):
        cos_factor = (1 + math.cos(math.pi * self.last_step / self.T_max)) / 2
        values = []
        for base in self.base_values:
            eta_min = (base * self.eta_min_ratio
                       if self.eta_min_ratio is not None else self.eta_min)
            values.append(eta_min + (base - eta_min) * cos_factor)
        return values


def check_stages(stages: Sequence[int], key: str = 'stages') -> List[int]:
    """Validate a stage-boundary list such as ``[0, 800, 1600]``.

    Raises ``ValueError`` naming ``key`` so a config error points at the
    offending option.
    """
    stages = list(stages)
    if len(stages) < 2:
        raise ValueError(
            f'`{key}` must list the stage boundaries in epochs, from 0 to the '
            f'last epoch, e.g. [0, 800, 1600]; got {stages}')
    if any(not isinstance(s, int) or isinstance(s, bool) for s in stages):
        raise ValueError(f'`{key}` must contain integer epochs; got {stages}')
    if stages[0] != 0:
        raise ValueError(f'`{key}` must start at epoch 0; got {stages}')
    if any(b <= a for a, b in zip(stages[:-1], stages[1:])):
        raise ValueError(f'`{key}` must be strictly increasing; got {stages}')
    return stages


def stage_lr_schedulers(stages: Sequence[int],
                        warmup_epochs: int = 40,
                        start_factor: float = 0.,
                        eta_min: float = 0.,
                        convert_to_iter_based: bool = True) -> List[dict]:
    """Return ``param_scheduler`` dicts for the per-stage dBOT LR schedule.

    Args:
        stages (Sequence[int]): Stage boundaries in epochs, e.g.
            ``[0, 800, 1600]`` for two stages of 800 epochs.
        warmup_epochs (int): Linear warmup at the start of every stage
            (official: 40). 0 disables it.
        start_factor (float): LR factor at the first warmup step
            (official: 0).
        eta_min (float): LR at the end of each stage (official ``min_lr``: 0).
        convert_to_iter_based (bool): Update every iteration, as the official
            code does, while begin/end stay readable in epochs.

    Returns:
        list[dict]: Two schedulers per stage (one if ``warmup_epochs`` is 0).
    """
    stages = check_stages(stages)
    if not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ValueError('`warmup_epochs` must be a non-negative integer; '
                         f'got {warmup_epochs}')
    schedulers = []
    for begin, end in zip(stages[:-1], stages[1:]):
        if warmup_epochs >= end - begin:
            raise ValueError(
                f'`warmup_epochs` ({warmup_epochs}) must be shorter than '
                f'every stage; stage [{begin}, {end}) is {end - begin} epochs')
        if warmup_epochs:
            schedulers.append(
                dict(
                    type='StageLinearLR',
                    start_factor=start_factor,
                    end_factor=1.0,
                    by_epoch=True,
                    begin=begin,
                    end=begin + warmup_epochs,
                    convert_to_iter_based=convert_to_iter_based))
        schedulers.append(
            dict(
                type='StageCosineAnnealingLR',
                eta_min=eta_min,
                by_epoch=True,
                begin=begin + warmup_epochs,
                end=end,
                convert_to_iter_based=convert_to_iter_based))
    return schedulers


def stage_recipe(stages: Sequence[int],
                 teacher_depths: Optional[Sequence[int]] = None,
                 warmup_epochs: int = 40,
                 start_factor: float = 0.,
                 eta_min: float = 0.,
                 extra_hooks: Sequence[dict] = (),
                 **bootstrap_cfg) -> Tuple[List[dict], List[dict]]:
    """Return ``(param_scheduler, custom_hooks)`` of a staged pretrain run.

    ``param_scheduler`` is :func:`stage_lr_schedulers` (warmup + cosine,
    restarted every stage). ``custom_hooks`` lists, in this order,
    ``StageBootstrapHook`` (only with two stages or more: one stage keeps its
    teacher), ``EpochSeedHook`` (a resumed run repeats the uninterrupted one),
    ``NonFiniteLossHook`` (stop on NaN/Inf before a checkpoint), then
    ``extra_hooks`` (monitors, plots). The order is kept as written: hooks of
    equal priority run in list order.

    Args:
        stages (Sequence[int]): Stage boundaries in epochs, e.g.
            ``[0, 800, 1600]``.
        teacher_depths (Sequence[int], optional): Teacher blocks in each
            stage (``StageBootstrapHook.teacher_depths``); needed with two
            stages or more.
        warmup_epochs (int): Linear warmup at the start of every stage.
        start_factor (float): LR factor at the first warmup step.
        eta_min (float): LR at the end of each stage.
        extra_hooks (Sequence[dict]): Hooks appended after the three above.
        **bootstrap_cfg: Further ``StageBootstrapHook`` arguments
            (``reinit_student``, ``reset_optimizer``, ``seed``), written into
            its dict only when given.

    Returns:
        tuple[list[dict], list[dict]]: ``param_scheduler`` and
        ``custom_hooks``.
    """
    stages = check_stages(stages)
    param_scheduler = stage_lr_schedulers(
        stages,
        warmup_epochs=warmup_epochs,
        start_factor=start_factor,
        eta_min=eta_min)
    custom_hooks = []
    if len(stages) > 2:
        if teacher_depths is None:
            raise ValueError(
                f'`teacher_depths` is needed for the {len(stages) - 1} '
                f'stages {stages}: one teacher depth per stage')
        custom_hooks.append(
            dict(
                type='StageBootstrapHook',
                stages=stages,
                teacher_depths=list(teacher_depths),
                **bootstrap_cfg))
    elif teacher_depths is not None or bootstrap_cfg:
        raise ValueError(
            f'one stage {stages} has no boundary to bootstrap at; drop '
            '`teacher_depths` and the StageBootstrapHook arguments')
    custom_hooks += [
        dict(type='EpochSeedHook'),
        dict(type='NonFiniteLossHook')
    ]
    custom_hooks += [dict(hook) for hook in extra_hooks]
    return param_scheduler, custom_hooks


def official_stage_recipe(stages: Sequence[int],
                          teacher_depths: Sequence[int],
                          warmup_epochs: int) -> Tuple[List[dict], List[dict]]:
    """:func:`stage_recipe` of the official ImageNet runs: at every boundary
    the student is redrawn and the AdamW state carries over."""
    return stage_recipe(
        stages,
        teacher_depths,
        warmup_epochs=warmup_epochs,
        reinit_student=True,
        reset_optimizer=False)


def monitored_stage_recipe(base, stages: Sequence[int],
                           teacher_depths: Sequence[int],
                           knn_monitor_size: Tuple[int, int],
                           knn_interval: int) -> tuple:
    """:func:`stage_recipe` of a config that re-sizes the kNN monitor of its
    ``base`` (whose last custom hook is the monitor, with
    ``knn_train_dataloader`` / ``knn_val_dataloader`` and ``warmup_epochs``).

    mmengine does not recompute what a base derived from the variables a
    child overrides, so a child that changes the stages or the monitor sizes
    must rebuild the loaders and hooks; this does it in one place.

    Returns:
        tuple: ``(knn_train_dataloader, knn_val_dataloader, param_scheduler,
        custom_hooks)``; the monitor runs every ``knn_interval`` epochs (0:
        at stage ends only) and once before training.
    """
    train, val = (
        dict(loader, dataset=dict(loader['dataset'], indices=size))
        for loader, size in zip((base['knn_train_dataloader'],
                                 base['knn_val_dataloader']),
                                knn_monitor_size))
    monitor = dict(base['custom_hooks'][-1], train_dataloader=train,
                   val_dataloader=val, interval=knn_interval,
                   eval_at_start=True)  # every curve starts at random init
    param_scheduler, custom_hooks = stage_recipe(
        stages, teacher_depths, warmup_epochs=base['warmup_epochs'],
        extra_hooks=[monitor])
    return train, val, param_scheduler, custom_hooks


def finetune_schedule(max_epochs: int, warmup_epochs: int,
                      eta_min: float = 1e-6) -> Tuple[List[dict], dict]:
    """``(param_scheduler, train_cfg)`` of a fine-tuning run: one stage of
    ``max_epochs``, linear warmup from 0, cosine down to ``eta_min``."""
    return stage_lr_schedulers([0, max_epochs],
                               warmup_epochs=warmup_epochs,
                               start_factor=0.,
                               eta_min=eta_min), dict(max_epochs=max_epochs)


def step_lr_schedulers(max_epochs: int,
                       milestones: Sequence[int],
                       warmup_iters: int = 500,
                       start_factor: float = 0.001,
                       gamma: float = 0.1) -> List[dict]:
    """Return ``param_scheduler`` dicts of the detection fine-tuning schedule
    (mmdet's 1x / 3x): a linear warmup over the first ``warmup_iters``
    iterations from ``start_factor``, then the LR multiplied by ``gamma`` at
    every epoch of ``milestones``, up to ``max_epochs``."""
    return [
        dict(
            type='LinearLR',
            start_factor=start_factor,
            by_epoch=False,
            begin=0,
            end=warmup_iters),
        dict(
            type='MultiStepLR',
            begin=0,
            end=max_epochs,
            by_epoch=True,
            milestones=list(milestones),
            gamma=gamma)
    ]
