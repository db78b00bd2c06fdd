"""A frozen teacher loaded from a converted checkpoint (dBOT, MAE, CLIP...).

The paper's strongest rows distil from teachers the student cannot be
bootstrapped into: a dBOT ViT-L for a ViT-B student, or CLIP visual towers
(CLIP-B/16, CLIP-L/14). Such a teacher may be wider than the student (the
decoder simply predicts its width), use another patch size (the input is
resized so both see the same token grid, as the official CLIP runs feed
ViT-L/14 a 196 px image), another input normalisation (CLIP's mean/std) and
CLIP's block details (``ln_pre``, QuickGELU, no patch-embed bias, eps 1e-5).
Everything else - depth buffer, freezing, eval mode - is :class:`ViTTeacher`.
"""
import os.path as osp
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.logging import print_log
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS
from torch import nn

from ..backbones.dbot_vit import to_pair, with_cls_pos
from .vit_teacher import ViTTeacher


@MODELS.register_module()
class PretrainedTeacher(ViTTeacher):
    """ViT teacher with weights from a converted checkpoint.

    Args:
        checkpoint (str, optional): Converted file (``tools/model_converters``)
            or any dbot_mm / mmpretrain checkpoint. Loaded in
            ``init_weights`` through the safe loader: every teacher tensor
            must be present (blocks beyond ``depth`` excepted) and have the
            right shape; a position table of another grid is resized.
            None leaves the weights to the caller (e.g. a resumed run).
        prefix (str): Key prefix of the teacher's tensors in the checkpoint:
            ``'backbone.'`` for converted files and dbot_mm students,
            ``'teacher.'`` for a dbot_mm run's teacher. Defaults to
            ``'backbone.'``.
        arch, img_size, patch_size, depth, final_norm, norm_cfg,
        interpolate_mode, patch_cfg, layer_cfgs: as in :class:`ViTTeacher`.
            ``img_size`` is the teacher's own input size: images of another
            size are resized to it (bicubic) before patch embedding.
        pre_norm (bool): LayerNorm after the position embedding (CLIP's
            ``ln_pre``). Defaults to False.
        out_proj_dims (int, optional): Keep CLIP's output projection
            (``proj``, no bias) to this width, as the official CLIP teacher
            does (the CLIP configs; convert with ``--keep-proj``). ``DBOT``
            sizes its prediction layer from the teacher's ``out_dims``, so
            the targets may have another width than the tokens.
        out_size (int | tuple, optional): Token grid of the targets. Patch
            tokens are resampled (bilinear) to it when the teacher's own grid
            differs, so the targets line up with the student's patches.
            Defaults to the teacher's grid.
        data_norm (dict, optional): ``mean``/``std`` the data preprocessor
            already applied (0-255 scale).
        teacher_norm (dict, optional): ``mean``/``std`` the teacher was
            trained with. With both given the input is re-normalised
            (e.g. ImageNet -> CLIP statistics).
        init_cfg: must not be ``Pretrained``; use ``checkpoint``.

    Attributes:
        out_dims (int): width of the returned tokens (``embed_dims`` or
            ``out_proj_dims``): the decoder's ``predict_dim``.
        num_patches (int): patch tokens returned (``out_size`` grid).
    """

    def __init__(self,
                 checkpoint: Optional[str] = None,
                 prefix: str = 'backbone.',
                 arch: Union[str, dict] = 'b',
                 img_size: Union[int, Sequence[int]] = 224,
                 patch_size: int = 16,
                 depth: Optional[int] = None,
                 final_norm: bool = False,
                 pre_norm: bool = False,
                 out_proj_dims: Optional[int] = None,
                 out_size: Optional[Union[int, Sequence[int]]] = None,
                 data_norm: Optional[dict] = None,
                 teacher_norm: Optional[dict] = None,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 interpolate_mode: str = 'bicubic',
                 patch_cfg: dict = dict(),
                 layer_cfgs: dict = dict(),
                 init_cfg: Optional[Union[list, dict]] = None) -> None:
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            raise ValueError('PretrainedTeacher: pass the file as '
                             '`checkpoint=...`; a Pretrained init_cfg would '
                             'load it non-strictly.')
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            depth=depth,
            final_norm=final_norm,
            norm_cfg=norm_cfg,
            interpolate_mode=interpolate_mode,
            patch_cfg=patch_cfg,
            layer_cfgs=layer_cfgs,
            init_cfg=init_cfg)
        if pre_norm:
            self.pre_norm = build_norm_layer(norm_cfg, self.embed_dims)[1]
        self.out_proj = nn.Linear(self.embed_dims, out_proj_dims, bias=False) \
            if out_proj_dims else None
        self.out_dims = out_proj_dims or self.embed_dims
        self.out_size = to_pair(out_size) if out_size is not None \
            else tuple(self.patch_resolution)
        self.num_patches = self.out_size[0] * self.out_size[1]
        self._set_input_norm(data_norm, teacher_norm)
        self.checkpoint = checkpoint
        self.prefix = prefix
        if checkpoint is not None:
            # Describes the origin for DBOT.teacher_info; loading itself is
            # done (strictly) by init_weights below, not by mmengine.
            self.init_cfg = dict(
                type='Pretrained', checkpoint=checkpoint, prefix=prefix)
        for param in self.parameters():
            param.requires_grad_(False)
        self.train(False)

    def _set_input_norm(self, data_norm: Optional[dict],
                        teacher_norm: Optional[dict]) -> None:
        if (data_norm is None) != (teacher_norm is None):
            raise ValueError('data_norm and teacher_norm go together: the '
                             'first undoes the preprocessor, the second '
                             'applies the teacher statistics')
        self.renormalize = data_norm is not None
        if not self.renormalize:
            return
        d_mean, d_std, t_mean, t_std = (
            torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1)
            for v in (data_norm['mean'], data_norm['std'],
                      teacher_norm['mean'], teacher_norm['std']))
        # x_teacher = (x_data * d_std + d_mean - t_mean) / t_std
        self.register_buffer('input_scale', d_std / t_std, persistent=False)
        self.register_buffer(
            'input_shift', (d_mean - t_mean) / t_std, persistent=False)

    # ------------------------------------------------------------ loading
    def init_weights(self) -> None:
        """Random init (no checkpoint) or a strict load of ``checkpoint``."""
        if self.checkpoint is None:
            super().init_weights()
            return
        self.load_checkpoint(self.checkpoint, self.prefix)
        self._is_init = True

    @torch.no_grad()
    def load_checkpoint(self, filename: str, prefix: str = 'backbone.'
                        ) -> Dict[str, list]:
        """Copy the teacher's tensors from ``filename`` in place.

        Returns the keys under ``prefix`` the teacher does not use (e.g. a
        student's final norm, or CLIP's projection when it is left out),
        which are logged, not fatal: the official code loads teachers with
        ``strict=False`` for the same reason. Missing or mis-shaped tensors
        are errors.
        """
        from dbot_mm.utils.safe_load import safe_load
        ckpt = safe_load(osp.expanduser(filename), map_location='cpu')
        state = ckpt.get('state_dict', ckpt)
        self._check_meta(ckpt.get('meta', {}), filename)
        src = {k[len(prefix):]: v for k, v in state.items()
               if k.startswith(prefix)}
        if not src:
            prefixes = sorted({k.split('.')[0] + '.' for k in state})
            raise KeyError(f'{filename} has no keys under prefix '
                           f'"{prefix}"; it has {prefixes[:10]}. Set the '
                           'teacher\'s `prefix`.')
        table = src.get('pos_embed')
        if table is not None and table.shape != self.pos_embed.shape and \
                table.shape[-1] == self.pos_embed.shape[-1]:
            src['pos_embed'] = self._resize_table(table)
        for dst, value in self.match_state(src, filename, 'checkpoint',
                                           self.depth, prefix):
            dst.copy_(value.to(dst.dtype))
        unused = sorted(set(src) - set(self.state_dict()))
        if unused:
            print_log(f'PretrainedTeacher: unused keys in {filename}: '
                      f'{unused}', logger='current')
        return dict(unused_keys=unused)

    def _resize_table(self, pos_embed: torch.Tensor) -> torch.Tensor:
        side = int(round((pos_embed.shape[1] - 1)**.5))
        if side * side + 1 != pos_embed.shape[1]:
            raise ValueError(f'pos_embed with {pos_embed.shape[1]} tokens is '
                             'not a square grid plus cls token')
        return resize_pos_embed(pos_embed.float(), (side, side),
                                tuple(self.patch_resolution),
                                self.interpolate_mode, 1)

    def _check_meta(self, meta: dict, filename: str) -> None:
        """Refuse a config that would run the weights with other blocks.

        Converted CLIP files record their activation, norm eps and ``ln_pre``;
        running them as a plain ViT still gives plausible-looking targets,
        so a mismatch is an error rather than a silent bad teacher.
        """
        expect = (meta.get('dbot_mm') or {}).get('teacher_cfg') or {}
        mine = dict(
            act=type(self.layers[0].ffn.layers[0][1]).__name__
            if len(self.layers) else None,
            norm_eps=self.layers[0].ln1.eps if len(self.layers) else None,
            pre_norm=isinstance(self.pre_norm, nn.LayerNorm),
            patch_bias=self.patch_embed.projection.bias is not None)
        wrong = [
            f'{k}: checkpoint {expect[k]!r} vs teacher {mine[k]!r}'
            for k in mine
            if k in expect and mine[k] is not None and expect[k] != mine[k]
        ]
        if wrong:
            raise ValueError(
                f'{filename} was converted for another teacher config: '
                + '; '.join(wrong) + '. Use the teacher config printed by '
                'the converter.')

    # ------------------------------------------------------------ forward
    @torch.no_grad()
    def forward(self,
                x: torch.Tensor,
                mask: Optional[torch.Tensor] = None,
                ids_masked: Optional[torch.Tensor] = None) -> torch.Tensor:
        """All tokens (B, 1 + out_h * out_w, out_dims), cls first."""
        if self.renormalize:
            x = x * self.input_scale.to(x.dtype) + \
                self.input_shift.to(x.dtype)
        if tuple(x.shape[-2:]) != tuple(self.img_size):
            x = F.interpolate(
                x, size=tuple(self.img_size), mode='bicubic',
                align_corners=False)
        x, grid = self.patch_embed(x)
        x = self.blocks(self.pre_norm(with_cls_pos(self, x, grid)))
        if self.out_proj is not None:
            x = self.out_proj(x)
        if tuple(grid) != self.out_size:
            x = self._resample(x, grid)
        return x

    def _resample(self, x: torch.Tensor, grid) -> torch.Tensor:
        """Patch tokens of the teacher grid -> the student's grid."""
        cls, patches = x[:, :1], x[:, 1:]
        B, _, C = patches.shape
        patches = patches.transpose(1, 2).reshape(B, C, *grid)
        patches = F.interpolate(
            patches.float(), size=self.out_size, mode='bilinear',
            align_corners=False).to(x.dtype)
        return torch.cat([cls, patches.flatten(2).transpose(1, 2)], dim=1)

    def info(self) -> Dict[str, int]:
        return dict(super().info(), out_dims=self.out_dims,
                    num_patches=self.num_patches)
