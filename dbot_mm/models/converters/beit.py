"""Official dBOT CLIP-teacher checkpoints (``beit`` branch) -> ``ViTDense``.

The README's CLIP-teacher rows were trained with the symmetric BEiT-style
code: per-block relative position bias, no absolute position embedding
(``--abs_pos_emb`` off), layer scale, separate ``q_bias`` / ``v_bias``
(no key bias). ``ViTDense`` (cls / det / seg backbone) runs the same
computation when built with ``use_rel_pos_bias=True`` and layer scale:

* ``q_bias``/``v_bias`` become one ``qkv.bias`` with zeros for the keys;
* a shared ``rel_pos_bias`` table is copied into every block (adding the
  same bias in each block is what sharing means);
* the missing absolute embedding becomes a zero ``pos_embed`` - identical
  at load time, trainable afterwards.
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Tuple

import torch

from .common import (ConversionError, ConversionReport, StateDict,
                     build_on_meta, check_against, num_heads_for)
from .vit_official import _HEAD_LINEAR, _map_block

_BLOCK = re.compile(r'^blocks\.(\d+)\.(.+)$')
_REL_TABLE = 'attn.rel_pos_bias.relative_position_bias_table'


def is_beit_layout(state: Mapping[str, torch.Tensor]) -> bool:
    return any(k.endswith(('attn.q_bias', 'relative_position_bias_table'))
               for k in state)


def convert_beit(state: Mapping[str, torch.Tensor],
                 num_heads: Optional[int] = None,
                 head_type: str = 'LinearClsHead'
                 ) -> Tuple[StateDict, ConversionReport, Dict]:
    """BEiT-layout pre-trained or fine-tuned ViT -> ``ViTDense`` names.

    Returns ``backbone.*`` (and ``head.*`` for a fine-tuned classifier),
    a report, and the checked model config: ``ViTDense`` with the flags
    that reproduce the source (``use_rel_pos_bias``, layer scale, pooling).
    """
    enc, report = OrderedDict(), ConversionReport()
    q_bias, v_bias = {}, {}
    shared_table = state.get('rel_pos_bias.relative_position_bias_table')
    for key, value in state.items():
        match = _BLOCK.match(key)
        if match:
            index, rest = match.groups()
            if rest == 'attn.q_bias':
                q_bias[index] = value
            elif rest == 'attn.v_bias':
                v_bias[index] = value
            elif rest == 'attn.k_bias':
                if value.abs().max() > 0:
                    raise ConversionError(f'{key} is not zero; ViTDense '
                                          'has no separate key bias')
            elif rest == 'attn.relative_position_bias_table':
                enc[f'layers.{index}.{_REL_TABLE}'] = value
            elif rest == 'attn.relative_position_index':
                report.notes.append(f'{key} dropped (rebuilt from the grid)')
            elif _map_block(rest) is not None:
                enc[f'layers.{index}.{_map_block(rest)}'] = value
            else:
                report.unused_source_keys.append(key)
        elif key in ('cls_token', 'pos_embed'):
            enc[key] = value
        elif key.startswith('patch_embed.proj.'):
            enc['patch_embed.projection.' + key.split('.')[-1]] = value
        elif key.startswith('norm.'):
            enc['ln1.' + key.split('.')[-1]] = value
        elif key.startswith('fc_norm.'):
            enc['ln2.' + key.split('.')[-1]] = value
        elif key.startswith('rel_pos_bias.'):
            pass  # copied into the blocks below
        else:
            report.unused_source_keys.append(key)  # mask_token, lm_head...
    if 'cls_token' not in enc:
        raise ConversionError('no "cls_token": not a BEiT-layout ViT')
    blocks = sorted({k.split('.')[1] for k in enc
                     if k.startswith('layers.')}, key=int)
    for index in blocks:
        if index in q_bias:
            if index not in v_bias:
                raise ConversionError(f'blocks.{index} has q_bias but no '
                                      'v_bias')
            q, v = q_bias[index], v_bias[index]
            enc[f'layers.{index}.attn.qkv.bias'] = torch.cat(
                [q, torch.zeros_like(q), v])
        if shared_table is not None:
            enc[f'layers.{index}.{_REL_TABLE}'] = shared_table.clone()
    width = enc['cls_token'].shape[-1]
    patch = enc['patch_embed.projection.weight'].shape[-1]
    if 'pos_embed' not in enc:
        tables = [v for k, v in enc.items() if k.endswith(_REL_TABLE)]
        if not tables:
            raise ConversionError('neither pos_embed nor relative position '
                                  'tables: cannot tell the patch grid')
        side = (int(round((tables[0].shape[0] - 3)**.5)) + 1) // 2
        enc['pos_embed'] = torch.zeros(1, side * side + 1, width)
        report.notes.append('no absolute pos_embed in the source (BEiT '
                            '--abs_pos_emb off): a zero one is added')
    grid = int(round((enc['pos_embed'].shape[1] - 1)**.5))
    ffn = enc['layers.0.ffn.layers.0.0.weight'].shape[0]
    global_pool = 'ln2.weight' in enc
    backbone_cfg = dict(
        type='ViTDense',
        arch=dict(embed_dims=width, num_layers=len(blocks),
                  num_heads=num_heads or num_heads_for(width),
                  feedforward_channels=ffn),
        img_size=grid * patch,
        patch_size=patch,
        qkv_bias='layers.0.attn.qkv.bias' in enc,
        use_rel_pos_bias=f'layers.0.{_REL_TABLE}' in enc,
        layer_scale_init_value=0.1
        if 'layers.0.attn.gamma1.weight' in enc else 0.,
        out_type='avg_featmap' if global_pool else 'cls_token',
        final_norm='ln1.weight' in enc and not global_pool)
    report.merge(check_against(build_on_meta(backbone_cfg), enc), 'backbone.')
    out = OrderedDict(('backbone.' + k, v) for k, v in enc.items())
    model_cfg = dict(backbone=backbone_cfg)
    if 'head.weight' in state:
        report.unused_source_keys = [
            k for k in report.unused_source_keys if not k.startswith('head.')]
        linear = _HEAD_LINEAR[head_type]
        num_classes, in_channels = state['head.weight'].shape
        head_cfg = dict(type=head_type, num_classes=num_classes,
                        in_channels=in_channels)
        head = OrderedDict((f'{linear}.{n}', state[f'head.{n}'])
                           for n in ('weight', 'bias')
                           if f'head.{n}' in state)
        report.merge(check_against(build_on_meta(head_cfg), head), 'head.')
        out.update(('head.' + k, v) for k, v in head.items())
        model_cfg = dict(type='ImageClassifier', backbone=backbone_cfg,
                         neck=None, head=head_cfg)
    return out, report, model_cfg
