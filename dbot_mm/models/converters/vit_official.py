"""Official dBOT / MAE / DeiT checkpoints (timm ViT layout) -> dbot_mm.

The official code (``models_mae.py``) names things as timm does
(``patch_embed.proj``, ``blocks.N.attn.qkv``, ``norm``, ``decoder_*``);
dbot_mm uses mmpretrain's ``VisionTransformer`` / ``MAEViT`` names
(``patch_embed.projection``, ``layers.N.attn.qkv``, ``ln1``) so that the
same weights serve the student, the teacher and the cls/det/seg backbones.
The tensors themselves need no reshaping: both sides pack q, k, v in one
``qkv`` Linear in the same order.

Three outputs are supported:

* a dbot_mm pre-training checkpoint (``backbone.*`` student, ``neck.*``
  decoder, ``teacher.*`` from a ``checkpoint-teacher-*.pth``), to continue
  or inspect a run; likewise an official SdAE ``checkpoint-*.pth``, whose
  EMA teacher (``model_teacher``, final norm kept) becomes an
  :class:`EMATeacher`;
* a backbone-only checkpoint (``backbone.*``) for classification, detection,
  segmentation, or a :class:`PretrainedTeacher`;
* an mmpretrain ``ImageClassifier`` checkpoint from a fine-tuned model
  (``backbone.*`` + ``head.fc.*`` or ``head.layers.head.*``).
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Tuple

import torch

from .common import (ConversionError, ConversionReport, StateDict,
                     build_on_meta, check_against, num_heads_for)

# timm block -> mmpretrain TransformerEncoderLayer (suffix after the index)
_BLOCK_MAP = OrderedDict([
    ('norm1.', 'ln1.'),
    ('attn.qkv.', 'attn.qkv.'),
    ('attn.proj.', 'attn.proj.'),
    ('norm2.', 'ln2.'),
    ('mlp.fc1.', 'ffn.layers.0.0.'),
    ('mlp.fc2.', 'ffn.layers.1.'),
    ('ls1.gamma', 'attn.gamma1.weight'),  # timm >= 0.6 layer scale (DeiT-3)
    ('ls2.gamma', 'ffn.gamma2.weight'),
    ('gamma_1', 'attn.gamma1.weight'),  # BEiT / older layer-scale names
    ('gamma_2', 'ffn.gamma2.weight'),
])

# encoder tensors outside the blocks
_ENCODER_MAP = OrderedDict([
    ('cls_token', 'cls_token'),
    ('pos_embed', 'pos_embed'),
    ('patch_embed.proj.weight', 'patch_embed.projection.weight'),
    ('patch_embed.proj.bias', 'patch_embed.projection.bias'),
    ('norm.weight', 'ln1.weight'),
    ('norm.bias', 'ln1.bias'),
    ('fc_norm.weight', 'ln2.weight'),  # MAE fine-tuning with global pool
    ('fc_norm.bias', 'ln2.bias'),
])

_DECODER_MAP = OrderedDict([
    ('mask_token', 'mask_token'),
    ('decoder_pos_embed', 'decoder_pos_embed'),
    ('decoder_embed.weight', 'decoder_embed.weight'),
    ('decoder_embed.bias', 'decoder_embed.bias'),
    ('decoder_norm.weight', 'ln1.weight'),
    ('decoder_norm.bias', 'ln1.bias'),
    ('decoder_predp.weight', 'decoder_pred.weight'),  # dBOT: features
    ('decoder_predp.bias', 'decoder_pred.bias'),
    ('decoder_pred.weight', 'decoder_pred.weight'),  # MAE: pixels
    ('decoder_pred.bias', 'decoder_pred.bias'),
])

_BLOCK_KEY = re.compile(r'^(blocks|decoder_blocks)\.(\d+)\.(.+)$')


def _map_block(rest: str) -> Optional[str]:
    for src, dst in _BLOCK_MAP.items():
        if rest.startswith(src):
            return dst + rest[len(src):]
    return None


def split_official(state: Mapping[str, torch.Tensor]
                   ) -> Tuple[StateDict, StateDict, ConversionReport]:
    """Rename an official ``MaskedAutoencoderViT`` / timm ViT state dict.

    Returns:
        encoder (MAEViT names), decoder (DBOTDecoder names; empty for
        encoder-only files) and a report listing source keys left over
        (e.g. a classifier ``head`` or DeiT's ``dist_token``).
    """
    encoder, decoder = OrderedDict(), OrderedDict()
    report = ConversionReport()
    for key, value in state.items():
        match = _BLOCK_KEY.match(key)
        if match:
            group, index, rest = match.groups()
            new = _map_block(rest)
            if new is None:
                report.unused_source_keys.append(key)
            elif group == 'blocks':
                encoder[f'layers.{index}.{new}'] = value
            else:
                decoder[f'decoder_blocks.{index}.{new}'] = value
        elif key in _ENCODER_MAP:
            encoder[_ENCODER_MAP[key]] = value
        elif key in _DECODER_MAP:
            decoder[_DECODER_MAP[key]] = value
        else:
            report.unused_source_keys.append(key)
    if 'decoder_pred.weight' in state:
        report.notes.append('MAE pixel decoder (decoder_pred): it predicts '
                            'pixels, not teacher features')
    if 'cls_token' not in encoder:
        raise ConversionError(
            'no "cls_token" in the source: not an official ViT/MAE/dBOT '
            f'checkpoint in timm layout (first keys: {list(state)[:8]})')
    return encoder, decoder, report


def infer_vit_arch(encoder: Mapping[str, torch.Tensor],
                   num_heads: Optional[int] = None) -> Dict:
    """Arch, patch and image size of an encoder in MAEViT names.

    The head count is not stored in any tensor: it comes from the standard
    widths (ViT-S/B/L/H) unless given.
    """
    width = encoder['cls_token'].shape[-1]
    blocks = {int(k.split('.')[1]) for k in encoder if k.startswith('layers.')}
    depth = max(blocks) + 1 if blocks else 0
    if blocks and blocks != set(range(depth)):
        raise ConversionError(f'blocks {sorted(set(range(depth)) - blocks)} '
                              'are missing from the source')
    ffn = encoder.get('layers.0.ffn.layers.0.0.weight')
    patch = encoder['patch_embed.projection.weight'].shape[-1]
    grid = int(round((encoder['pos_embed'].shape[1] - 1)**.5)) \
        if 'pos_embed' in encoder else 224 // patch
    return dict(
        arch=dict(
            embed_dims=width,
            num_layers=depth,
            num_heads=num_heads or num_heads_for(width),
            feedforward_channels=(ffn.shape[0] if ffn is not None else
                                  4 * width)),
        patch_size=patch,
        img_size=grid * patch,
        layer_scale='layers.0.attn.gamma1.weight' in encoder)


def infer_decoder(decoder: Mapping[str, torch.Tensor], embed_dim: int,
                  num_patches: int,
                  num_heads: Optional[int] = None) -> Dict:
    width = decoder['decoder_embed.weight'].shape[0]
    blocks = {int(k.split('.')[1]) for k in decoder
              if k.startswith('decoder_blocks.')}
    ffn = decoder.get('decoder_blocks.0.ffn.layers.0.0.weight')
    return dict(
        type='DBOTDecoder',
        num_patches=num_patches,
        embed_dim=embed_dim,
        predict_dim=decoder['decoder_pred.weight'].shape[0],
        decoder_embed_dim=width,
        decoder_depth=len(blocks),
        # official decoders: 512 wide x 16 heads
        decoder_num_heads=num_heads or (16 if width == 512 else
                                        num_heads_for(width)),
        mlp_ratio=(ffn.shape[0] / width) if ffn is not None else 4.)


def _vit_cfg(info: Dict, **kwargs) -> Dict:
    cfg = dict(arch=info['arch'], img_size=info['img_size'],
               patch_size=info['patch_size'])
    cfg.update(kwargs)
    return cfg


def convert_official_pretrain(
        student: Mapping[str, torch.Tensor],
        teacher: Optional[Mapping[str, torch.Tensor]] = None,
        backbone_only: bool = False,
        num_heads: Optional[int] = None,
        teacher_num_layers: Optional[int] = None,
        ema_teacher: bool = False,
) -> Tuple[StateDict, ConversionReport, Dict]:
    """Official dBOT/MAE/SdAE pre-training weights -> dbot_mm tensors.

    Args:
        student: ``checkpoint['model']`` of ``checkpoint-*.pth`` (encoder and
            decoder) or an encoder-only release (MAE ``mae_pretrain_*``).
        teacher: ``checkpoint['model']`` of ``checkpoint-teacher-*.pth``
            (encoder of any depth, no decoder).
        backbone_only: keep only ``backbone.*`` (for cls/det/seg).
        num_heads: encoder heads if the width is not a standard one.
        teacher_num_layers: blocks the dbot_mm teacher is built with
            (``arch.num_layers``); defaults to the student's depth. Blocks
            the teacher file lacks are inactive (``active_depth``).
        ema_teacher: the teacher is SdAE's moving average
            (``checkpoint['model_teacher']``): converted for ``EMATeacher``
            (``configs/pretrain/sdae_vitb.py``) with its final norm, which
            SdAE applies; a dBOT teacher's is dropped (``tlayernorm=0``).

    Returns:
        The prefixed state dict, a report, and the model config the tensors
        were checked against (print it into your config).
    """
    enc, dec, report = split_official(student)
    if ema_teacher and 'decoder_pred.weight' in dec:
        # SdAE's decoder_pred predicts the teacher's features, not pixels
        report.notes = [n for n in report.notes
                        if not n.startswith('MAE pixel decoder')]
    info = infer_vit_arch(enc, num_heads)
    if backbone_only:
        # what cls/det/seg build; DeiT-3 style layer scale is kept
        backbone_cfg = _vit_cfg(
            info, type='VisionTransformer', out_type='raw',
            layer_scale_init_value=1e-5 if info['layer_scale'] else 0.)
    elif info['layer_scale']:
        raise ConversionError('layer-scale ViTs are not dBOT students; '
                              'convert them with backbone_only=True')
    else:
        backbone_cfg = _vit_cfg(info, type='DBOTViT')
    out = OrderedDict()
    report.merge(check_against(build_on_meta(backbone_cfg), enc), 'backbone.')
    out.update(('backbone.' + k, v) for k, v in enc.items())
    model_cfg = dict(backbone=backbone_cfg)
    if backbone_only:
        report.unused_source_keys += ['(decoder) ' + k for k in dec]
        return out, report, model_cfg

    num_patches = (info['img_size'] // info['patch_size'])**2
    if dec:
        neck_cfg = infer_decoder(dec, info['arch']['embed_dims'], num_patches)
        report.merge(check_against(build_on_meta(neck_cfg), dec), 'neck.')
        out.update(('neck.' + k, v) for k, v in dec.items())
        model_cfg['neck'] = neck_cfg
    else:
        report.notes.append('the source has no decoder (encoder-only '
                            'release): neck.* stays unconverted')
    if teacher is not None:
        t_enc, t_dec, t_report = split_official(teacher)
        report.unused_source_keys += ['(teacher) ' + k
                                      for k in t_report.unused_source_keys]
        report.unused_source_keys += ['(teacher decoder) ' + k for k in t_dec]
        t_depth = len({k.split('.')[1] for k in t_enc
                       if k.startswith('layers.')})
        t_width = t_enc['cls_token'].shape[-1]
        arch = dict(info['arch'])
        if t_width != arch['embed_dims']:
            arch = dict(infer_vit_arch(t_enc, None)['arch'])
        if ema_teacher:  # the student's average: same arch, all blocks
            teacher_cfg = dict(
                type='EMATeacher', arch=arch, img_size=info['img_size'],
                patch_size=info['patch_size'], final_norm=True)
        else:
            arch['num_layers'] = teacher_num_layers or max(
                t_depth, info['arch']['num_layers'])
            teacher_cfg = dict(
                type='ViTTeacher', arch=arch, img_size=info['img_size'],
                patch_size=info['patch_size'], depth=t_depth,
                final_norm=False)
        t_enc['active_depth'] = torch.tensor(t_depth, dtype=torch.long)
        t_check = check_against(
            build_on_meta(teacher_cfg), t_enc,
            ignore_missing=[f'layers.{i}.'
                            for i in range(t_depth, arch['num_layers'])])
        # the official dBOT teacher keeps its final norm but never applies
        # it; SdAE's applies it
        final_norm = [] if ema_teacher else [
            k for k in t_check.unexpected_keys if k.startswith('ln1.')]
        t_check.notes += [f'teacher "{k}" dropped (tlayernorm=0)'
                          for k in final_norm]
        for k in final_norm:
            t_enc.pop(k)
        t_check.unexpected_keys = [k for k in t_check.unexpected_keys
                                   if k not in final_norm]
        report.merge(t_check, 'teacher.')
        out.update(('teacher.' + k, v) for k, v in t_enc.items())
        model_cfg['teacher'] = teacher_cfg
    else:
        report.notes.append('no teacher file given: teacher.* stays '
                            'unconverted (pass checkpoint-teacher-*.pth)')
    return out, report, model_cfg


# mmpretrain head type -> name of its Linear
_HEAD_LINEAR = {'LinearClsHead': 'fc', 'VisionTransformerClsHead':
                'layers.head'}


def convert_official_finetuned(
        state: Mapping[str, torch.Tensor],
        num_heads: Optional[int] = None,
        head_type: str = 'LinearClsHead',
) -> Tuple[StateDict, ConversionReport, Dict]:
    """Official fine-tuned ViT (``models_vit.py``) -> ``ImageClassifier``.

    A global-pool model (``fc_norm``, the MAE/dBOT default) maps to
    ``out_type='avg_featmap'`` without final norm (``ln2`` is fc_norm); a
    cls-token model (``norm``) to ``out_type='cls_token'``.

    Args:
        head_type: ``'LinearClsHead'`` (``head.fc.*``, what
            ``configs/cls/*dbot-ft*`` build, so ``tools/test.py`` runs the
            converted file as is) or ``'VisionTransformerClsHead'``
            (``head.layers.head.*``).
    """
    if head_type not in _HEAD_LINEAR:
        raise ValueError(f'head_type must be one of {list(_HEAD_LINEAR)}')
    enc, dec, report = split_official(state)
    report.unused_source_keys += dec.keys()
    head = OrderedDict()
    linear = _HEAD_LINEAR[head_type]
    for name in ('weight', 'bias'):
        if f'head.{name}' in state:
            head[f'{linear}.{name}'] = state[f'head.{name}']
            report.unused_source_keys.remove(f'head.{name}')
    if f'{linear}.weight' not in head:
        raise ConversionError('no "head.weight": not a fine-tuned classifier')
    info = infer_vit_arch(enc, num_heads)
    global_pool = 'ln2.weight' in enc
    backbone_cfg = _vit_cfg(
        info,
        type='VisionTransformer',
        out_type='avg_featmap' if global_pool else 'cls_token',
        final_norm=not global_pool,
        layer_scale_init_value=1e-5 if info['layer_scale'] else 0.)
    num_classes, in_channels = head[f'{linear}.weight'].shape
    head_cfg = dict(type=head_type, num_classes=num_classes,
                    in_channels=in_channels)
    report.merge(check_against(build_on_meta(backbone_cfg), enc), 'backbone.')
    report.merge(check_against(build_on_meta(head_cfg), head), 'head.')
    out = OrderedDict(('backbone.' + k, v) for k, v in enc.items())
    out.update(('head.' + k, v) for k, v in head.items())
    model_cfg = dict(
        type='ImageClassifier', backbone=backbone_cfg, neck=None,
        head=head_cfg)
    return out, report, model_cfg
