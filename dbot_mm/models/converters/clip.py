"""OpenAI CLIP / OpenCLIP visual towers -> :class:`PretrainedTeacher`.

CLIP's ViT differs from a timm ViT in details that change every target if
missed: a LayerNorm before the blocks (``ln_pre``), no bias in the patch
embedding, LayerNorm eps 1e-5, ``nn.MultiheadAttention`` (fused
``in_proj``) and, for OpenAI weights, QuickGELU. The converted file records
these in ``meta['dbot_mm']['teacher_cfg']`` and the teacher refuses to load
it with other settings.
"""
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Tuple

import torch

from .common import (ConversionError, ConversionReport, StateDict,
                     build_on_meta, check_against, num_heads_for)

# CLIP's normalisation (openai/CLIP clip.py), on the 0-255 scale.
CLIP_MEAN = [0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255]
CLIP_STD = [0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255]
IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]

_TOP_MAP = {
    'conv1.weight': 'patch_embed.projection.weight',
    'ln_pre.weight': 'pre_norm.weight',
    'ln_pre.bias': 'pre_norm.bias',
    'ln_post.weight': 'ln1.weight',
    'ln_post.bias': 'ln1.bias',
}
_BLOCK_MAP = OrderedDict([
    ('ln_1.', 'ln1.'),
    ('attn.in_proj_weight', 'attn.qkv.weight'),
    ('attn.in_proj_bias', 'attn.qkv.bias'),
    ('attn.out_proj.', 'attn.proj.'),
    ('ln_2.', 'ln2.'),
    ('mlp.c_fc.', 'ffn.layers.0.0.'),
    ('mlp.c_proj.', 'ffn.layers.1.'),
    ('ls_1.gamma', 'attn.gamma1.weight'),
    ('ls_2.gamma', 'ffn.gamma2.weight'),
])
_BLOCKS = 'transformer.resblocks.'


def visual_state(state: Mapping[str, torch.Tensor]) -> StateDict:
    """The image tower of a full CLIP state dict (``visual.*``) or as is."""
    if any(k.startswith('visual.') for k in state):
        return OrderedDict((k[len('visual.'):], v) for k, v in state.items()
                           if k.startswith('visual.'))
    return OrderedDict(state)


def convert_clip_visual(
        state: Mapping[str, torch.Tensor],
        quick_gelu: bool = True,
        keep_proj: bool = False,
        final_norm: bool = True,
        num_heads: Optional[int] = None,
        img_size: Optional[int] = None,
) -> Tuple[StateDict, ConversionReport, Dict]:
    """Rename a CLIP image tower to :class:`PretrainedTeacher` keys.

    Args:
        state: full CLIP (``visual.*``) or image-tower state dict, OpenAI
            or OpenCLIP layout.
        quick_gelu: the tower was trained with QuickGELU (all OpenAI
            weights and OpenCLIP ``*-quickgelu`` models); plain OpenCLIP
            ViT-B-16 / ViT-L-14 use GELU.
        keep_proj: also convert the output projection ``proj`` (official
            dBOT CLIP teacher); otherwise it is reported as not converted.
        final_norm: apply ``ln_post`` to every token (official
            ``post_patch_norm=True``).
        num_heads: heads, if the width is not a standard one.
        img_size: teacher input size; defaults to the tower's own
            (grid x patch). Use e.g. 196 for CLIP-L/14 with a /16 student.

    Returns:
        ``backbone.``-prefixed tensors, a report and the teacher config
        (to paste into a pretrain config, with ``checkpoint`` set).
    """
    vis = visual_state(state)
    skipped = len(state) - len(vis)
    if 'class_embedding' not in vis or 'conv1.weight' not in vis:
        raise ConversionError(
            'not a CLIP ViT image tower: no class_embedding / conv1 '
            f'(first keys: {list(vis)[:8]}); ResNet towers are not supported')
    out, report = OrderedDict(), ConversionReport()
    if skipped:
        report.notes.append(f'{skipped} non-image keys (text tower, '
                            'logit scale) skipped')
    for key, value in vis.items():
        if key == 'class_embedding':
            out['cls_token'] = value.reshape(1, 1, -1)
        elif key == 'positional_embedding':
            out['pos_embed'] = value.unsqueeze(0)
        elif key == 'proj':
            if keep_proj:
                out['out_proj.weight'] = value.t().contiguous()
            else:
                report.unused_source_keys.append(key)
        elif key in _TOP_MAP:
            out[_TOP_MAP[key]] = value
        elif key.startswith(_BLOCKS):
            index, rest = key[len(_BLOCKS):].split('.', 1)
            for src, dst in _BLOCK_MAP.items():
                if rest.startswith(src):
                    out[f'layers.{index}.{dst}{rest[len(src):]}'] = value
                    break
            else:
                report.unused_source_keys.append(key)
        else:
            report.unused_source_keys.append(key)

    width = out['cls_token'].shape[-1]
    patch = out['patch_embed.projection.weight'].shape[-1]
    grid = int(round((out['pos_embed'].shape[1] - 1)**.5))
    depth = len({k.split('.')[1] for k in out if k.startswith('layers.')})
    ffn = out['layers.0.ffn.layers.0.0.weight'].shape[0]
    eps = 1e-5  # torch nn.LayerNorm default, used by both CLIP codebases
    teacher_cfg = dict(
        type='PretrainedTeacher',
        arch=dict(
            embed_dims=width,
            num_layers=depth,
            num_heads=num_heads or num_heads_for(width),
            feedforward_channels=ffn),
        img_size=img_size or grid * patch,
        patch_size=patch,
        pre_norm='pre_norm.weight' in out,
        final_norm=final_norm,
        out_proj_dims=out['out_proj.weight'].shape[0] if keep_proj else None,
        norm_cfg=dict(type='LN', eps=eps),
        patch_cfg=dict(bias=False),
        layer_cfgs=dict(
            act_cfg=dict(type='mmpretrain.QuickGELU' if quick_gelu else
                         'GELU'),
            layer_scale_init_value=1e-5
            if 'layers.0.attn.gamma1.weight' in out else 0.),
        data_norm=dict(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        teacher_norm=dict(mean=CLIP_MEAN, std=CLIP_STD))
    if not teacher_cfg['layer_cfgs']['layer_scale_init_value']:
        del teacher_cfg['layer_cfgs']['layer_scale_init_value']
    if not final_norm:
        report.notes.append('ln_post kept in the file but not applied '
                            '(final_norm=False)')
    # checked at the native grid: the file keeps the lossless table and the
    # teacher resizes it on loading when img_size differs
    check = check_against(
        build_on_meta(dict(teacher_cfg, img_size=grid * patch)), out,
        ignore_missing=['active_depth'])
    if not final_norm:
        check.unexpected_keys = [k for k in check.unexpected_keys
                                 if not k.startswith('ln1.')]
    report.merge(check, 'backbone.')
    out = OrderedDict(('backbone.' + k, v) for k, v in out.items())
    return out, report, teacher_cfg


def teacher_meta(teacher_cfg: Dict) -> Dict:
    """What :meth:`PretrainedTeacher._check_meta` compares on loading."""
    act = teacher_cfg['layer_cfgs']['act_cfg']['type'].split('.')[-1]
    return dict(
        act=act,
        norm_eps=teacher_cfg['norm_cfg']['eps'],
        pre_norm=teacher_cfg['pre_norm'],
        patch_bias=teacher_cfg['patch_cfg'].get('bias', True))
