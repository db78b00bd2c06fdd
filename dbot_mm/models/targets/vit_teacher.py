"""Frozen ViT teacher whose tokens are dBOT's distillation targets.

The teacher shares the student encoder's parameter layout so that, at a stage
boundary, the student's weights can be copied straight in. It is built once
with the largest depth it will ever need; the persistent ``active_depth``
buffer says how many blocks actually run, so bootstrapping never allocates new
Parameters (DDP and the checkpoint keep valid references and shapes).

The buffer is what checkpoints hold; the forward reads a Python-int copy of
it instead, because ``int(buffer)`` on a GPU is a host sync every step. The
copy is refreshed wherever the buffer is written: ``set_depth``,
``load_from_student`` and state-dict loading.
"""
import re
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
from mmpretrain.models.selfsup.mae import MAEViT
from mmpretrain.registry import MODELS
from torch.func import functional_call

from ..backbones.dbot_vit import (check_patch_grid, run_blocks,
                                   use_fast_attention, with_cls_pos)
from .base import BaseTarget

_LAYER_KEY = re.compile(r'^layers\.(\d+)\.')


@MODELS.register_module()
class ViTTeacher(MAEViT, BaseTarget):
    """ViT teacher: full image in, all tokens (cls first) out.

    Always frozen and in eval mode; drop path and dropout are 0 because the
    official teacher uses ``tdpr=0`` and targets must be deterministic.
    ``out_dims`` is ``embed_dims``; the cls token counts (``with_cls``).

    Args:
        arch (str | dict): ViT architecture (as mmpretrain
            ``VisionTransformer``); ``num_layers`` is the most blocks the
            teacher will ever run.
        img_size (int): Input size; must match the student's.
        patch_size (int): Patch size; must match the student's.
        depth (int, optional): Blocks run at start (``active_depth``).
            0 means patch embed + pos embed + cls token only (official ViT-L/H
            stage 1). Defaults to all ``num_layers``.
        final_norm (bool): Apply the last LayerNorm. dBOT does not
            (``tlayernorm=0``); True is for the ablation. Defaults to False.
        norm_cfg, interpolate_mode, patch_cfg, layer_cfgs, init_cfg: as in
            ``MAEViT``. ``init_cfg=dict(type='Pretrained', ...)`` loads a
            fixed pretrained teacher.
    """

    #: config keys ``DBOT`` fills in from the student when left out
    follows_student = ('arch', 'img_size', 'patch_size')

    def __init__(self,
                 arch: Union[str, dict] = 'b',
                 img_size: int = 224,
                 patch_size: int = 16,
                 depth: Optional[int] = None,
                 final_norm: bool = False,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 interpolate_mode: str = 'bicubic',
                 patch_cfg: dict = dict(),
                 layer_cfgs: dict = dict(),
                 init_cfg: Optional[Union[list, dict]] = None) -> None:
        check_patch_grid(img_size, patch_size, type(self).__name__)
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            drop_rate=0.,
            drop_path_rate=0.,
            norm_cfg=norm_cfg,
            final_norm=final_norm,
            out_type='raw',
            interpolate_mode=interpolate_mode,
            patch_cfg=patch_cfg,
            layer_cfgs=layer_cfgs,
            init_cfg=init_cfg)
        depth = self.num_layers if depth is None else depth
        self._check_depth(depth)
        self.register_buffer(
            'active_depth', torch.tensor(depth, dtype=torch.long))
        self._depth = int(depth)
        self.out_dims = self.embed_dims
        for param in self.parameters():
            param.requires_grad_(False)
        self.train(False)
        use_fast_attention(self)

    def _check_depth(self, depth: int) -> None:
        if not 0 <= int(depth) <= self.num_layers:
            raise ValueError(
                f'teacher depth={depth} is outside [0, num_layers='
                f'{self.num_layers}]; build the teacher with '
                f'arch.num_layers >= the deepest stage.')

    @property
    def depth(self) -> int:
        """Blocks currently run (the buffer's value, kept as a Python int)."""
        return self._depth

    def set_depth(self, depth: int) -> None:
        """Change how many blocks run, in place (the buffer is persistent)."""
        self._check_depth(depth)
        self.active_depth.fill_(int(depth))
        self._depth = int(depth)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Refresh the depth copy after a checkpoint (resume) wrote the
        buffer; the one host read happens here, not in the step."""
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if not self.active_depth.is_meta:
            self._depth = int(self.active_depth)

    @torch.no_grad()
    def forward(self,
                x: torch.Tensor,
                mask: Optional[torch.Tensor] = None,
                ids_masked: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Return all tokens (B, 1 + L, C), cls first, no final norm."""
        x, grid = self.patch_embed(x)
        return self.blocks(with_cls_pos(self, x, grid))

    def blocks(self, x: torch.Tensor) -> torch.Tensor:
        """The ``depth`` active blocks, then the final norm if enabled."""
        x = run_blocks(self.layers[:self.depth], x, with_cp=False)
        return self.ln1(x) if self.final_norm else x

    @torch.no_grad()
    def forward_bf16(self, inputs: torch.Tensor, **kwargs) -> torch.Tensor:
        """``forward`` entirely in bf16: weights and residual stream.

        For bf16 autocast, whose fp32 residual stream would cast around every
        matmul. The bf16 weights are cast per call from the fp32 ones rather
        than cached, so no copy can go stale when the teacher is bootstrapped
        or loaded; only the blocks that run are cast.
        """
        weights = {
            name: param.to(torch.bfloat16)
            for name, param in self.named_parameters()
            if param.is_floating_point() and self._runs(name)
        }
        with torch.autocast(inputs.device.type, enabled=False):
            return functional_call(self, weights,
                                   (inputs.to(torch.bfloat16), ), kwargs,
                                   strict=False)

    def _runs(self, name: str, depth: Optional[int] = None) -> bool:
        """Whether tensor ``name`` takes part in the forward at ``depth``
        (default: the current one): all but the blocks at or beyond it."""
        match = _LAYER_KEY.match(name)
        depth = self.depth if depth is None else depth
        return not match or int(match.group(1)) < depth

    def match_state(self,
                    state: Mapping[str, torch.Tensor],
                    source: str,
                    kind: str,
                    depth: Optional[int] = None,
                    prefix: str = ''
                    ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """(teacher tensor, ``state`` tensor) pairs, all or none.

        Every teacher tensor but ``active_depth`` must be in ``state`` with
        its shape; with ``depth`` given, blocks at or beyond it may be
        missing (a deeper teacher than the source). Extra ``state`` keys are
        ignored (the official ``strict=False`` loads). ``source``, ``kind``
        and ``prefix`` name the source in the errors.
        """
        pairs, missing = [], []
        for name, dst in self.state_dict(keep_vars=True).items():
            if name == 'active_depth':
                continue
            if name not in state:
                if depth is None or self._runs(name, depth):
                    missing.append(name)
                continue
            src = state[name]
            if src.shape != dst.shape:
                raise ValueError(
                    f'{source}: shape mismatch for "{prefix}{name}": {kind} '
                    f'{tuple(src.shape)} vs teacher {tuple(dst.shape)} '
                    '(check the arch, img_size and patch_size of both).')
            pairs.append((dst, src))
        if missing:
            raise KeyError(
                f'{source} lacks teacher tensors (prefix "{prefix}"'
                + ('' if depth is None else f', teacher depth {depth}')
                + f'): {missing[:10]}' + (' ...' if len(missing) > 10 else ''))
        return pairs

    @torch.no_grad()
    def load_from_student(self,
                          state: Mapping[str, torch.Tensor],
                          depth: Optional[int] = None) -> None:
        """Copy a student encoder's weights in place (Parameters kept).

        Student keys the teacher lacks (e.g. its final norm) are ignored, like
        the official ``strict=False`` load. Teacher blocks at or beyond
        ``depth`` may be missing from ``state`` (a deeper teacher than the
        student); anything else missing or mis-shaped is an error, and
        nothing is copied unless everything fits.

        Args:
            state: student encoder ``state_dict()`` (no prefix).
            depth: new ``active_depth``; None keeps the current one.
        """
        depth = self.depth if depth is None else int(depth)
        self._check_depth(depth)
        width = state.get('cls_token')
        if width is not None and width.shape[-1] != self.embed_dims:
            raise ValueError(
                f'student width (arch.embed_dims={width.shape[-1]}) != '
                f'teacher width (arch.embed_dims={self.embed_dims}); a '
                f'teacher can only be bootstrapped from a student of the '
                f'same width.')
        for dst, src in self.match_state(state, 'student state', 'student',
                                         depth):
            dst.copy_(src)
        self.active_depth.fill_(depth)
        self._depth = depth

    def info(self) -> Dict[str, int]:
        return dict(depth=self.depth, num_layers=self.num_layers)

