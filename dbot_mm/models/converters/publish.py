"""dbot_mm training checkpoint -> published backbone file.

A pre-training checkpoint carries the decoder, the teacher, AdamW moments
and the message hub - several times the size of the encoder, and nothing a
downstream task loads. The published file keeps ``backbone.*`` only (what
mmpretrain / mmdet / mmseg configs load with ``prefix='backbone.'``) and is
named ``<name>-<sha256[:8]>.pth`` as OpenMMLab's ``publish_model`` does, so
a download can be checked against its name.
"""
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch

from dbot_mm.utils.safe_load import safe_load
from .common import (ConversionError, ConversionReport, save_checkpoint,
                     sha256_prefix)

_DROPPED_TOP = ('optimizer', 'param_schedulers', 'message_hub', 'hook_msgs',
                'ema_state_dict')


def extract_backbone(ckpt: Dict, source: str = 'backbone'
                     ) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """``backbone.*`` tensors of a dbot_mm checkpoint.

    Args:
        ckpt: a loaded mmengine checkpoint (``state_dict`` + extras).
        source: ``'backbone'`` (the student encoder, the usual choice) or
            ``'teacher'`` (publish the current teacher as a backbone; its
            ``active_depth`` buffer is dropped and it must run all blocks).
    """
    if 'state_dict' not in ckpt:
        raise ConversionError('not an mmengine checkpoint: no "state_dict" '
                              f'(top-level keys: {list(ckpt)[:10]})')
    state = ckpt['state_dict']
    prefix = source + '.'
    out = OrderedDict(('backbone.' + k[len(prefix):], v)
                      for k, v in state.items() if k.startswith(prefix))
    if not out:
        raise ConversionError(
            f'no "{prefix}*" keys; prefixes present: '
            f'{sorted({k.split(".")[0] for k in state})}')
    report = ConversionReport()
    if source == 'teacher':
        depth = out.pop('backbone.active_depth', None)
        layers = {k.split('.')[2] for k in out if k.startswith(
            'backbone.layers.')}
        if depth is not None and int(depth) != len(layers):
            raise ConversionError(
                f'the teacher runs {int(depth)} of its {len(layers)} blocks;'
                ' a published backbone would run all of them')
    dropped = sorted({k.split('.')[0] for k in state} - {source})
    report.notes.append(f'dropped state_dict groups: {dropped}')
    report.notes.append('dropped top-level entries: '
                        f'{[k for k in ckpt if k in _DROPPED_TOP]}')
    return out, report


def publish_backbone(in_file: str,
                     out_file: str,
                     source: str = 'backbone',
                     meta: Optional[Dict] = None
                     ) -> Tuple[str, ConversionReport]:
    """Write ``out_file`` stem + ``-<sha256[:8]>.pth`` and return its path."""
    ckpt = safe_load(in_file, map_location='cpu')
    state, report = extract_backbone(ckpt, source)
    old_meta = ckpt.get('meta') or {}
    new_meta = {k: old_meta[k] for k in ('epoch', 'iter', 'dbot_mm')
                if k in old_meta and _plain(old_meta[k])}
    new_meta.update(meta or {})
    new_meta['published_from'] = osp.basename(in_file)
    stem = out_file[:-4] if out_file.endswith('.pth') else out_file
    tmp = stem + '.tmp.pth'
    save_checkpoint(state, tmp, new_meta)
    final = f'{stem}-{sha256_prefix(tmp)}.pth'
    os.replace(tmp, final)
    return final, report


def _plain(value) -> bool:
    """Only meta that ``weights_only`` loading accepts is carried over."""
    if isinstance(value, (str, int, float, bool, type(None))):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False
