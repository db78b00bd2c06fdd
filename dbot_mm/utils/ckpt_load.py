"""Load a pretrained encoder out of a full dbot_mm checkpoint, with a report.

mmengine's ``PretrainedInit`` only *logs* missing keys, and a wrong prefix
(or mmseg's ``MAE``, which ignores ``prefix``) silently loads nothing. A
transfer run that starts from random weights looks like a bad result, not like
a bug, so here every key the module expects is accounted for: loaded, newly
introduced by the downstream architecture (allowed), or missing (an error).
"""
import re
from typing import Dict, Iterable, Optional

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.runner.checkpoint import _load_checkpoint

__all__ = ['PretrainedLoadError', 'extract_state_dict', 'load_pretrained']

#: The encoder of a dbot_mm pretraining checkpoint lives under this prefix
#: (``teacher.*``, ``neck.*`` and ``head.*`` are the rest of the algorithm).
BACKBONE_PREFIX = 'backbone.'


class PretrainedLoadError(RuntimeError):
    """The checkpoint does not provide weights the module needs."""


def extract_state_dict(checkpoint, prefix: Optional[str] = None,
                       source: str = 'the checkpoint') -> dict:
    """The (sub-)state dict under ``prefix`` of a loaded checkpoint.

    ``prefix=None`` takes ``backbone.`` when the checkpoint has such keys, so
    both a full pretraining checkpoint and a bare encoder state dict work.
    ``source`` (the file name) goes into the error message.
    """
    state = checkpoint
    for key in ('state_dict', 'model'):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if prefix is None and any(k.startswith(BACKBONE_PREFIX) for k in state):
        prefix = BACKBONE_PREFIX
    if not prefix:
        return dict(state)
    if not prefix.endswith('.'):
        prefix += '.'
    sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not sub:
        heads = sorted({k.split('.')[0] + '.' for k in state})[:8]
        raise PretrainedLoadError(
            f'{source}: no key starts with prefix "{prefix}"; the file has '
            f'top-level prefixes {heads}')
    return sub


def load_pretrained(module: nn.Module,
                    checkpoint: str,
                    prefix: Optional[str] = None,
                    new_keys: Iterable[str] = (),
                    strict: bool = True,
                    map_location='cpu') -> Dict[str, list]:
    """Load ``checkpoint`` (under ``prefix``) into ``module`` and report.

    Args:
        module: the model part to fill (its ``load_state_dict`` pre-hooks run,
            e.g. position-embedding resizing).
        checkpoint: path or URL (read through mmengine, hence dbot_mm's safe
            loader).
        prefix: key prefix to strip; see :func:`extract_state_dict`.
        new_keys: regular expressions for the module's own keys that a
            pretraining checkpoint cannot have (adapter, rel-pos tables, layer
            scale, ...). They keep their fresh initialisation.
        strict: raise :class:`PretrainedLoadError` when any other key of the
            module is missing from the checkpoint.

    Returns:
        dict with sorted key lists ``loaded``, ``new`` (initialised from
        scratch), ``missing`` (expected but absent) and ``unexpected``
        (in the checkpoint but unused, e.g. the pretraining final norm).
    """
    ckpt = _load_checkpoint(checkpoint, map_location=map_location)
    state = extract_state_dict(ckpt, prefix, source=str(checkpoint))
    result = module.load_state_dict(state, strict=False)
    patterns = [re.compile(p) for p in new_keys]
    new = sorted(k for k in result.missing_keys
                 if any(p.search(k) for p in patterns))
    missing = sorted(set(result.missing_keys) - set(new))
    report = dict(
        loaded=sorted(set(state) & set(module.state_dict())),
        new=new,
        missing=missing,
        unexpected=sorted(result.unexpected_keys))
    print_log(
        f'{type(module).__name__}: loaded {len(report["loaded"])} tensors '
        f'from {checkpoint} (prefix {prefix!r}); new, trained from scratch: '
        f'{_short(new)}; missing: {_short(missing)}; unused in checkpoint: '
        f'{_short(report["unexpected"])}',
        logger='current')
    if strict and missing:
        raise PretrainedLoadError(
            f'{checkpoint} lacks {len(missing)} weights of '
            f'{type(module).__name__}: {_short(missing, 20)}. Check the arch '
            'and the prefix (pretraining checkpoints keep the encoder under '
            '"backbone.").')
    return report


def _short(keys, limit: int = 6) -> str:
    if not keys:
        return 'none'
    more = f' ... (+{len(keys) - limit})' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more
