"""Everything ``import dbot_mm`` changes outside dbot_mm, applied here once.

1. Checkpoint loading (mmengine 0.10.7 + torch >= 2.6): mmengine's local and
   http checkpoint loaders go through :mod:`dbot_mm.utils.safe_load`
   (``weights_only=True`` plus an explicit allow-list) instead of failing on
   ``HistoryBuffer``.
2. Checkpoint saving: mmengine's ``LocalBackend.put`` writes atomically
   (temp file + rename, :func:`dbot_mm.utils.checkpoint_io.atomic_write_bytes`).
3. Auto-resume: mmengine's ``find_latest_checkpoint`` (used by ``--resume
   auto``) skips a truncated checkpoint
   (:func:`dbot_mm.utils.checkpoint_io.find_latest_valid_checkpoint`).
4. numpy >= 2.4 removed ``np.in1d``, which mmpretrain's retrieval metrics
   still call; it is restored as ``np.isin(ar1.ravel(), ar2)`` only when
   missing.

The list is logged once per process, one INFO line in the first Runner's
log (not at import: command-line tools keep their output to themselves).
"""
import logging

import numpy as np

from .utils.checkpoint_io import (atomic_write_bytes,
                                  find_latest_valid_checkpoint)
from .utils.safe_load import patch_mmengine as _route_loading

_applied = []


def _in1d(ar1, ar2, assume_unique=False, invert=False, *, kind=None):
    """numpy's removed ``in1d``: ``isin`` on the flattened first argument."""
    return np.isin(np.asarray(ar1).ravel(), ar2, assume_unique=assume_unique,
                   invert=invert, kind=kind)


def _atomic_saves() -> None:
    from mmengine.fileio.backends import LocalBackend

    def put(self, obj: bytes, filepath) -> None:
        atomic_write_bytes(obj, str(filepath))

    LocalBackend.put = put


def _validating_auto_resume() -> None:
    from mmengine.runner import checkpoint as ckpt_mod
    from mmengine.runner import runner as runner_mod
    ckpt_mod.find_latest_checkpoint = find_latest_valid_checkpoint
    runner_mod.find_latest_checkpoint = find_latest_valid_checkpoint


def _log_once_when_a_runner_starts() -> None:
    from mmengine.runner import Runner
    build_logger = Runner.build_logger
    if getattr(build_logger, '_dbot_mm', False):
        return

    def build_and_log(self, *args, **kwargs):
        logger = build_logger(self, *args, **kwargs)
        if _applied and not getattr(Runner, '_dbot_mm_compat_logged', False):
            Runner._dbot_mm_compat_logged = True
            logger.log(logging.INFO, 'dbot_mm compat: ' + '; '.join(_applied))
        return logger

    build_and_log._dbot_mm = True
    Runner.build_logger = build_and_log


def apply() -> None:
    """Apply the changes above (once; a second call does nothing)."""
    if _applied:
        return
    _route_loading()
    _applied.append('mmengine checkpoint loading -> dbot_mm.utils.safe_load '
                    '(weights_only + allow-list)')
    _atomic_saves()
    _applied.append('atomic local checkpoint writes')
    _validating_auto_resume()
    _applied.append('--resume auto skips truncated checkpoints')
    if not hasattr(np, 'in1d'):
        np.in1d = _in1d
        _applied.append('np.in1d restored')
    _log_once_when_a_runner_starts()


apply()
