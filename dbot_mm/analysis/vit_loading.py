"""A plain ViT out of any checkpoint the project writes or converts.

Analyses must run on the student of a pretraining checkpoint
(``backbone.*``), on its teacher (``teacher.*``, only the blocks it runs),
on published / converted backbone files and on bare encoder state dicts,
without building the pretraining algorithm (decoder, losses) around them.
All are MAEViT-layout encoders, so one ``ViTDense`` with ``out_type='raw'``
(which also covers relative position bias and layer scale of fine-tuned
dense backbones) loads each of them strictly.
"""
import copy
import os.path as osp
from typing import Optional, Tuple

import torch
from torch import nn

__all__ = ['load_vit', 'split_component']

COMPONENTS = ('auto', 'backbone', 'teacher', 'none')


def split_component(state: dict, component: str = 'auto'
                    ) -> Tuple[dict, str]:
    """The encoder tensors of ``component`` (prefix stripped) and its name.

    ``'auto'`` takes ``backbone.*``, else ``teacher.*``, else the whole
    dict (a bare encoder); ``'none'`` always the whole dict.
    """
    if component not in COMPONENTS:
        raise ValueError(f'component must be one of {COMPONENTS}, got '
                         f'{component!r}')
    if component == 'auto':
        component = next((c for c in ('backbone', 'teacher')
                          if any(k.startswith(c + '.') for k in state)),
                         'none')
    if component == 'none':
        return dict(state), component
    prefix = component + '.'
    sub = {k[len(prefix):]: v for k, v in state.items()
           if k.startswith(prefix)}
    if not sub:
        heads = sorted({k.split('.')[0] for k in state})[:10]
        raise KeyError(f'no "{prefix}*" keys in the checkpoint; top-level '
                       f'prefixes: {heads}')
    return sub, component


def _arch_from_config(path: str, component: str) -> Tuple[dict, object]:
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    model = cfg.get('model') or {}
    part = model.get(component if component != 'none' else 'backbone')
    if not part:
        raise KeyError(f'{path}: model.{component} is not defined')
    spec = dict(arch=copy.deepcopy(part.get('arch', 'b')))
    for key in ('img_size', 'patch_size'):
        if key in part:
            spec[key] = part[key]
    return spec, cfg


def _arch_dict(arch) -> dict:
    from mmpretrain.models.backbones.vision_transformer import \
        VisionTransformer
    if isinstance(arch, str):
        if arch.lower() not in VisionTransformer.arch_zoo:
            raise ValueError(
                f'unknown arch {arch!r}; use a config file, "auto", or one '
                f'of {sorted(VisionTransformer.arch_zoo)}')
        arch = VisionTransformer.arch_zoo[arch.lower()]
    return {k: arch[k] for k in ('embed_dims', 'num_layers', 'num_heads',
                                 'feedforward_channels')}


def load_vit(checkpoint: str,
             config_or_arch: str = 'auto',
             component: str = 'auto',
             img_size: Optional[int] = None,
             num_heads: Optional[int] = None) -> Tuple[nn.Module, dict]:
    """Build the encoder stored in ``checkpoint`` and load it strictly.

    Args:
        checkpoint: mmengine checkpoint (``state_dict``), a ``{'model': ...}``
            file or a bare state dict, read by dbot_mm's safe loader.
        config_or_arch: a config file (``model.<component>`` gives arch,
            patch and image size; its data preprocessor is returned for
            normalising inputs), an mmpretrain arch name (``'b'``,
            ``'deit-tiny'``...), or ``'auto'``: infer widths and depth from
            the tensors (head count from the standard widths unless
            ``num_heads`` is given).
        component: ``'backbone'`` (student), ``'teacher'``, ``'none'`` (the
            file is the encoder itself) or ``'auto'``.
        img_size: override the training size the position table encodes.
        num_heads: head count, which no tensor records.

    Returns:
        (model in eval mode, info) where info has ``component``, ``arch``,
        ``patch_size``, ``img_size``, ``depth`` and ``config`` (or None).
    """
    from dbot_mm.models.backbones.vit_dense import ViTDense
    from dbot_mm.models.converters.vit_official import infer_vit_arch
    from dbot_mm.utils.safe_load import safe_load

    ckpt = safe_load(checkpoint, map_location='cpu')
    state = ckpt
    for key in ('state_dict', 'model'):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    state, component = split_component(state, component)

    # A teacher built deeper than it runs: keep the blocks it runs.
    active = state.pop('active_depth', None)
    inferred = infer_vit_arch(state, num_heads)
    cfg = None
    if osp.splitext(str(config_or_arch))[1] == '.py':
        spec, cfg = _arch_from_config(config_or_arch, component)
        arch = _arch_dict(spec['arch'])
        patch = spec.get('patch_size', inferred['patch_size'])
        size = spec.get('img_size', inferred['img_size'])
    elif config_or_arch == 'auto':
        arch = dict(inferred['arch'])
        patch, size = inferred['patch_size'], inferred['img_size']
    else:
        arch = _arch_dict(config_or_arch)
        patch, size = inferred['patch_size'], inferred['img_size']
    if num_heads is not None:
        arch['num_heads'] = int(num_heads)
    depth = arch['num_layers'] if active is None else int(active)
    if depth > arch['num_layers']:
        raise ValueError(f'teacher runs {depth} blocks but the arch has '
                         f'{arch["num_layers"]}')
    state = {k: v for k, v in state.items()
             if not (k.startswith('layers.')
                     and int(k.split('.')[1]) >= depth)}
    arch['num_layers'] = depth
    if img_size is not None:
        size = img_size

    model = ViTDense(
        arch=arch,
        img_size=size,
        patch_size=patch,
        out_type='raw',
        final_norm='ln1.weight' in state,
        use_rel_pos_bias=any('rel_pos_bias' in k for k in state),
        layer_scale_init_value=1.0 if inferred.get('layer_scale') else 0.,
        strict_pretrained=True)
    # Only tensors that plain encoders never have are tolerated.
    ignorable = ('mask_token', 'ln2.', 'head.', 'adapter.')
    own = model.state_dict()
    unexpected = [k for k in state if k not in own
                  and not k.startswith(ignorable)]
    # pos_embed may differ in length only: its load hook resizes the grid.
    mismatched = [
        f'{k} {tuple(v.shape)} vs {tuple(own[k].shape)}'
        for k, v in state.items() if k in own and v.shape != own[k].shape
        and not (k == 'pos_embed' and v.shape[-1] == own[k].shape[-1])
    ]
    missing = [k for k in own if k not in state]
    if missing or unexpected or mismatched:
        raise ValueError(
            f'{checkpoint} ({component}) does not fit a ViT with arch '
            f'{arch}, patch {patch}: missing {missing[:8]}, unexpected '
            f'{unexpected[:8]}, shape mismatch {mismatched[:4]}')
    model.load_state_dict({k: v for k, v in state.items() if k in own})
    model.eval()
    info = dict(component=component, arch=arch, patch_size=patch,
                img_size=size, depth=depth, config=cfg)
    return model, info
