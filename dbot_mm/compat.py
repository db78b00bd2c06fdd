"""Fixes for the pinned stack, applied once on ``import dbot_mm``.

* mmengine 0.10.7 + torch >= 2.6: checkpoints are loaded through
  :mod:`dbot_mm.utils.safe_load` (``weights_only=True`` plus an explicit
  allow-list) instead of failing on ``HistoryBuffer``.
* Checkpoints are written atomically (temp file + rename) and
  ``--resume auto`` never picks a truncated one
  (:mod:`dbot_mm.utils.checkpoint_io`).
* numpy >= 2.4 removed ``np.in1d``, which mmpretrain's retrieval metrics
  still call; it is restored as the documented equivalent
  ``np.isin(ar1.ravel(), ar2)`` only when missing.
"""
import numpy as np

from .utils.checkpoint_io import patch_mmengine as _patch_saving
from .utils.safe_load import patch_mmengine as _patch_loading


def _in1d(ar1, ar2, assume_unique=False, invert=False, *, kind=None):
    """numpy's removed ``in1d``: ``isin`` on the flattened first argument."""
    return np.isin(np.asarray(ar1).ravel(), ar2, assume_unique=assume_unique,
                   invert=invert, kind=kind)


def apply() -> None:
    _patch_loading()
    _patch_saving()
    if not hasattr(np, 'in1d'):
        np.in1d = _in1d


apply()
