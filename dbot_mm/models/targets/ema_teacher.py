"""EMA teacher with multi-fold views of the hidden patches (SdAE).

SdAE (Chen et al., ECCV 2022) distils from an exponential moving average of
the student encoder that sees only hidden patches. What follows was read from
the official code (github.com/AbrahamYabo/SdAE) and is reproduced here:

* Teacher network (``models_teacher.py``, ``VisionTransformer``): the
  student's ViT without decoder, drop path 0, final LayerNorm applied
  (``forward_teachers`` ends with ``self.norm``).
* Teacher view (``models_teacher.forward_teachers``): patch embedding plus
  patch position embedding of the whole image, then only the first
  ``shrink_num`` entries of the student's ``ids_unkeep`` (hidden patches in
  masking order, ``models_mae.random_masking``) are gathered, truncated to a
  multiple of ``ncrop_loss`` and reshaped ``(B, n, C) -> (B * ncrop_loss,
  n / ncrop_loss, C)``: fold ``j`` of an image is the ``j``-th contiguous
  chunk. Each fold gets its own cls token (+ its position embedding), runs
  through all blocks and the final norm alone; ``forward`` drops the cls
  token, so the cls token never counts in the loss. Visible patches never
  enter. Without ``shrink_num`` the teacher sees the whole image (all
  tokens, one view) and the loss takes the hidden positions.
* Targets and predictions (``engine_pretrain.train_one_epoch_ema``): the
  teacher's tokens are normalised per token, ``(t - mean) / sqrt(var +
  1e-6)`` (unbiased var); the student's decoder output (cls removed by
  ``models_mae.forward_decoder``) is gathered at the same ids and reshaped
  the same way, and is *not* normalised. Loss ``1 - cosine_similarity(
  teacher, student).mean()``: see ``DistillCosineLoss`` for the axis.
* EMA (``engine_pretrain.EMA_process`` / ``weight_delivery``): every teacher
  parameter, the final norm and the position embedding included, becomes
  ``m * teacher + (1 - m) * student`` (decoder and mask token skipped);
  driven here by ``EMATeacherHook``.
* Initial teacher (``main_pretrain.py``): a freshly initialised ViT, not a
  copy of the student (``init_teacher_from_student=False`` in
  ``configs/pretrain/sdae_vitb.py``). Its weights here are drawn by the MAE
  init like the student's; the official one is timm's init, whose position
  embedding is random and only approaches the student's fixed sin-cos table
  through the average (``0.96 ** epochs``), while here it starts equal.
  The official code runs distributed only (the published recipe: 8 GPUs):
  in a single process ``model_teacher_without_ddp`` is bound to the student
  and ``weight_delivery`` reads ``model.module``, which a model outside DDP
  lacks, so the first EMA step stops with an ``AttributeError``. Under DDP
  the average goes into the teacher, as here.
* Checkpoints (``util/misc.save_model``): student under ``model``, teacher
  under ``model_teacher`` with its final norm;
  ``tools/model_converters/dbot_official_to_mm.py`` converts both.

One deliberate difference: when ``shrink_num`` is a multiple of
``ncrop_loss`` the official loop gathers the student's predictions with the
untruncated ``ids_unkeep``; that only lines up with the teacher when
``shrink_num`` equals the number of hidden patches (147 of 196 in the
published recipe). Here both sides always use the same first ``shrink_num``
(rounded down to a multiple of ``num_folds``) hidden ids.
"""
from typing import Mapping, Optional, Tuple, Union

import torch
from mmpretrain.registry import MODELS

from ..backbones.dbot_vit import with_cls_pos
from .vit_teacher import ViTTeacher


@MODELS.register_module()
class EMATeacher(ViTTeacher):
    """ViT teacher updated as a moving average of the student encoder.

    Args:
        arch, img_size, patch_size, norm_cfg, interpolate_mode, patch_cfg,
        layer_cfgs, init_cfg: as in :class:`ViTTeacher` (``arch`` must be
            the student's: the average needs the same tensors).
        final_norm (bool): Apply the final LayerNorm (SdAE does).
            Defaults to True.
        shrink_num (int, optional): Hidden patches the teacher sees, the
            first ones in masking order (official ``--shrink_num``; 147 for
            ViT-B/16 at mask ratio 0.75). None: the whole image.
        num_folds (int, optional): Folds the ``shrink_num`` patches are split
            into, each encoded on its own (official ``--ncrop_loss``). None
            or 1: one view of all ``shrink_num`` patches.

    Attributes:
        with_cls (bool): False, the cls token is dropped.
        needs_mask (bool): True when ``shrink_num`` is set.
    """

    with_cls = False
    origin = 'ema'  # DBOT.teacher_info

    def __init__(self,
                 arch: Union[str, dict] = 'b',
                 img_size: int = 224,
                 patch_size: int = 16,
                 final_norm: bool = True,
                 shrink_num: Optional[int] = None,
                 num_folds: Optional[int] = None,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 interpolate_mode: str = 'bicubic',
                 patch_cfg: dict = dict(),
                 layer_cfgs: dict = dict(),
                 init_cfg: Optional[Union[list, dict]] = None) -> None:
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            final_norm=final_norm,
            norm_cfg=norm_cfg,
            interpolate_mode=interpolate_mode,
            patch_cfg=patch_cfg,
            layer_cfgs=layer_cfgs,
            init_cfg=init_cfg)
        num_folds = num_folds or 1
        if shrink_num is not None and not \
                num_folds <= shrink_num <= self.num_patches:
            raise ValueError(
                f'EMATeacher: shrink_num={shrink_num} must be in '
                f'[num_folds={num_folds}, num_patches={self.num_patches}] '
                '(and at most the number of hidden patches)')
        self.shrink_num = shrink_num
        self.num_folds = num_folds
        self.needs_mask = shrink_num is not None

    # ------------------------------------------------------------- views
    def fold_ids(self, ids_masked: torch.Tensor) -> torch.Tensor:
        """(B, F * n) patch ids the teacher sees, fold after fold."""
        used = self.shrink_num - self.shrink_num % self.num_folds
        if ids_masked.shape[1] < used:
            raise ValueError(
                f'EMATeacher: shrink_num={self.shrink_num} but the student '
                f'hides only {ids_masked.shape[1]} patches')
        return ids_masked[:, :used]

    def _folds(self, tokens: torch.Tensor,
               ids_masked: torch.Tensor) -> torch.Tensor:
        """Gather the view's tokens, (B, L, C) -> (B * F, n, C)."""
        ids = self.fold_ids(ids_masked)
        B, _, C = tokens.shape
        x = torch.gather(tokens, 1, ids.unsqueeze(-1).expand(-1, -1, C))
        return x.reshape(B * self.num_folds, -1, C)

    @torch.no_grad()
    def encode(self, patches: torch.Tensor) -> torch.Tensor:
        """Encode embedded patches (N, n, C) as one view: own cls token,
        blocks, final norm; the cls token is dropped on return."""
        cls = (self.cls_token + self.pos_embed[:, :1]).to(patches.dtype)
        x = torch.cat([cls.expand(patches.shape[0], -1, -1), patches], 1)
        return self.blocks(x)[:, 1:]

    @torch.no_grad()
    def forward(self,
                inputs: torch.Tensor,
                mask: Optional[torch.Tensor] = None,
                ids_masked: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Patch tokens: (B * F, n, C) folds, or (B, L, C) for the image."""
        x, grid = self.patch_embed(inputs)
        x = with_cls_pos(self, x, grid)[:, 1:]  # own cls token per view
        if self.shrink_num is not None:
            if ids_masked is None:
                raise ValueError('EMATeacher with shrink_num needs the '
                                 "student's hidden patch ids")
            x = self._folds(x, ids_masked)
        return self.encode(x)

    def select(self, pred: torch.Tensor, mask: torch.Tensor,
               ids_masked: Optional[torch.Tensor] = None
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Student predictions at the teacher's positions, all counted."""
        patches = pred[:, 1:]
        if self.shrink_num is None:
            return patches, mask
        folds = self._folds(patches, ids_masked)
        return folds, folds.new_ones(folds.shape[:2])

    # ---------------------------------------------------------------- EMA
    @torch.no_grad()
    def ema_update(self, state: Mapping[str, torch.Tensor],
                   momentum: float) -> None:
        """``t <- m * t + (1 - m) * s`` for every teacher tensor, in place.

        ``state`` is the student encoder's ``state_dict()`` (no prefix);
        every floating-point tensor of the teacher must be in it with the
        same shape (student tensors the teacher lacks are ignored). The
        ``active_depth`` buffer is left alone.
        """
        m = float(momentum)
        if not 0. <= m <= 1.:
            raise ValueError(f'EMA momentum must be in [0, 1], got {m}')
        for dst, src in self.match_state(state, 'EMATeacher: student state',
                                         'student'):
            dst.mul_(m).add_(src.to(dst) * (1 - m))

    def info(self) -> dict:
        return dict(super().info(), shrink_num=self.shrink_num,
                    num_folds=self.num_folds)
