"""Test-only components imported by the subprocess runs of tools/train.py
(``custom_imports`` of the configs that ``rel_helpers.write_config`` writes).

- ``FaultInjectionHook``: the process SIGKILLs itself, driven by env vars:
  ``DBOT_MM_TEST_KILL_AT_ITER=N`` (before iteration N, 0-based global
  iteration), ``DBOT_MM_TEST_KILL_AFTER_STEP=N`` (after the optimizer step of
  iteration N, before anything after it), ``DBOT_MM_TEST_KILL_IN_SAVE=name``
  (inside the atomic write of checkpoint ``name``, after its bytes are in
  the temporary file and before the rename), ``DBOT_MM_TEST_KILL_IN_POINTER=
  name`` (after ``name`` is complete, while ``last_checkpoint`` is being
  rewritten: the pointer is left empty).
- ``RecordHook``: every rank appends its loss per iteration to
  ``<work_dir>/losses_rank<r>.jsonl`` and saves its full model state right
  after each stage boundary and at the end (``state_rank<r>_*.pth``).
- ``ReplayMaskDBOT``: DBOT whose masking noise is a function of the sample
  index (and the stage), not of the RNG stream, so that one process with a
  batch of 2B and two processes with B each mask every image alike.
"""
import json
import os
import os.path as osp
import signal

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS, MODELS

from dbot_mm.models.algorithms.dbot import DBOT


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _env_int(name):
    value = os.environ.get(name)
    return None if value in (None, '') else int(value)


@HOOKS.register_module()
class FaultInjectionHook(Hook):
    priority = 'LOWEST'

    def __init__(self):
        self.kill_at = _env_int('DBOT_MM_TEST_KILL_AT_ITER')
        self.kill_after = _env_int('DBOT_MM_TEST_KILL_AFTER_STEP')
        self.kill_in_save = os.environ.get('DBOT_MM_TEST_KILL_IN_SAVE')
        self.kill_in_pointer = os.environ.get('DBOT_MM_TEST_KILL_IN_POINTER')

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self.kill_at is not None and runner.iter == self.kill_at:
            _die()

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        # LOWEST: after ParamSchedulerHook / CheckpointHook of this iteration
        if self.kill_after is not None and runner.iter == self.kill_after:
            _die()

    def before_save_checkpoint(self, runner, checkpoint):
        target = f'epoch_{runner.epoch + 1}.pth'  # as CheckpointHook names it
        if self.kill_in_save == target:
            from dbot_mm.utils import checkpoint_io
            real_replace = checkpoint_io.os.replace

            def replace(src, dst):
                if osp.basename(dst) == target:
                    _die()  # temp file written and fsynced, not renamed
                return real_replace(src, dst)

            checkpoint_io.os.replace = replace
        if self.kill_in_pointer == target:
            import builtins
            real_open = builtins.open

            def open_(file, mode='r', *args, **kwargs):
                f = real_open(file, mode, *args, **kwargs)
                if osp.basename(str(file)) == 'last_checkpoint' and \
                        'w' in mode:
                    f.flush()
                    _die()  # truncated to empty, new path not written
                return f

            builtins.open = open_


def _model(runner):
    return runner.model.module if is_model_wrapper(runner.model) \
        else runner.model


@HOOKS.register_module()
class RecordHook(Hook):
    priority = 'LOW'  # after StageBootstrapHook (ABOVE_NORMAL)

    def __init__(self, save_states=True):
        self.save_states = save_states
        self._stage = None

    def _path(self, runner, name):
        return osp.join(runner.work_dir, name.format(rank=runner.rank))

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        with open(self._path(runner, 'losses_rank{rank}.jsonl'), 'a') as f:
            f.write(json.dumps(dict(
                iter=runner.iter,
                loss=float(outputs['loss']),
                lr=runner.optim_wrapper.get_lr()['lr'][0],
                samples=[int(s.sample_idx)
                         for s in data_batch['data_samples']])) + '\n')

    def before_train(self, runner):
        with open(self._path(runner, 'seed_rank{rank}.txt'), 'w') as f:
            f.write(str(runner.seed))

    def before_train_epoch(self, runner):
        stage = int(_model(runner).stage)
        if self.save_states and self._stage is not None \
                and stage != self._stage:
            torch.save(_model(runner).state_dict(),
                       self._path(runner, 'state_rank{rank}_boundary_'
                                  f'epoch{runner.epoch}.pth'))
        self._stage = stage

    def after_train(self, runner):
        if self.save_states:
            torch.save(_model(runner).state_dict(),
                       self._path(runner, 'state_rank{rank}_final.pth'))


@MODELS.register_module()
class ReplayMaskDBOT(DBOT):

    def loss(self, inputs, data_samples=None, noise=None, mask=None):
        num_patches = self.backbone.num_patches
        stage = int(self.stage)
        rows = []
        for sample in data_samples:
            g = torch.Generator().manual_seed(
                1000 * int(sample.sample_idx) + stage)
            rows.append(torch.rand(num_patches, generator=g))
        noise = torch.stack(rows).to(inputs.device)
        return super().loss(inputs, data_samples, noise=noise)
