"""Loss of dBOT: regress normalised teacher tokens on masked patches + cls.

The criteria return one value per token so that the head alone decides which
tokens count; their names are prefixed ``Distill`` to stay clear of mmdet's
``SmoothL1Loss``/``MSELoss`` when both are installed.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from torch import nn


@MODELS.register_module()
class DistillSmoothL1Loss(nn.Module):
    """Per-token smooth L1 (official dBOT loss, ``beta=2.0``)."""

    def __init__(self, beta: float = 2.0) -> None:
        super().__init__()
        self.beta = beta

    def forward(self, pred: torch.Tensor,
                target: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(
            pred, target, reduction='none', beta=self.beta).mean(-1)


@MODELS.register_module()
class DistillL2Loss(nn.Module):
    """Per-token mean squared error (paper's loss ablation)."""

    def forward(self, pred: torch.Tensor,
                target: torch.Tensor) -> torch.Tensor:
        return (pred - target).pow(2).mean(-1)


@MODELS.register_module()
class DistillCosineLoss(nn.Module):
    """``1 - cos(pred, target)`` (dBOT's loss ablation; SdAE's loss).

    Args:
        dim (int): Axis of the cosine. ``-1`` (default): over channels, one
            value per token. ``1``: over the tokens of each (B, N, C) row,
            one value per channel: what the official SdAE loop computes, as
            it calls ``F.cosine_similarity(teacher, student)`` with torch's
            default ``dim=1`` on (B * folds, n, C) tensors
            (``engine_pretrain.train_one_epoch_ema``). That form does not
            give a value per token, so the head accepts it only when every
            token counts (SdAE's folds).
        eps (float): Defaults to 1e-8 (torch's).
    """

    def __init__(self, dim: int = -1, eps: float = 1e-8) -> None:
        super().__init__()
        if dim not in (-1, 1, 2):
            raise ValueError(f'dim must be -1 (channels, = 2) or 1 (tokens),'
                             f' got {dim}')
        self.dim = dim
        self.eps = eps
        self.per_token = dim != 1

    def forward(self, pred: torch.Tensor,
                target: torch.Tensor) -> torch.Tensor:
        return 1 - F.cosine_similarity(
            pred, target, dim=self.dim, eps=self.eps)


@MODELS.register_module()
class MaskedDistillHead(BaseModule):
    """Normalise teacher tokens and average a per-token loss over the mask.

    Args:
        loss (dict): Criterion built from ``MODELS``. It may return per-token
            (B, N) or per-element (B, N, C) losses; the latter are averaged
            over channels. A criterion with ``per_token = False`` (e.g.
            ``DistillCosineLoss(dim=1)``) reduces over tokens itself; its
            output is simply averaged, and every token must count.
            Defaults to ``DistillSmoothL1Loss(beta=2.0)``.
        norm_target (bool): Standardise each target token over channels
            (unbiased variance, no affine), as the official
            ``--norm_feature_loss``. Defaults to True.
        eps (float): Added to the variance. Defaults to 1e-6.
        init_cfg (dict, optional): Defaults to None.
    """

    def __init__(self,
                 loss: dict = dict(type='DistillSmoothL1Loss', beta=2.0),
                 norm_target: bool = True,
                 eps: float = 1e-6,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.criterion = MODELS.build(loss) if isinstance(loss, dict) \
            else loss
        self.norm_target = norm_target
        self.eps = eps

    def normalize(self, target: torch.Tensor) -> torch.Tensor:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        return (target - mean) / (var + self.eps).sqrt()

    def loss(self, pred: torch.Tensor, target: torch.Tensor,
             mask: torch.Tensor) -> torch.Tensor:
        """Masked mean of the per-token loss.

        Computed in float32: under fp16 AMP the per-token variance over
        hundreds of channels and the masked sum are where precision is lost.
        The predictions are never normalised (none of dBOT, MAE, MaskFeat
        and SdAE does).

        Args:
            pred: (B, N, C) decoder output at the target's positions (for
                dBOT's teachers all tokens, cls at index 0).
            target: (B, N, C) target tokens.
            mask: (B, N), 1 for tokens that count (e.g. masked patches and
                cls).
        """
        if pred.shape != target.shape:
            raise ValueError(
                f'pred {tuple(pred.shape)} and target {tuple(target.shape)} '
                f'differ; the decoder predict_dim must equal the target '
                f'width (out_dims) and the target\'s select() must cut the '
                f'prediction to its positions.')
        if mask.shape != pred.shape[:2]:
            raise ValueError(f'mask {tuple(mask.shape)} must be (B, N) = '
                             f'{tuple(pred.shape[:2])}')
        pred = pred.float()
        target = target.detach().float()
        if self.norm_target:
            target = self.normalize(target)
        per_token = self.criterion(pred, target)
        if not getattr(self.criterion, 'per_token', True):
            if not bool(mask.all()):
                raise ValueError(
                    f'{type(self.criterion).__name__} reduces over tokens; '
                    'it cannot skip tokens, so every mask entry must be 1')
            return per_token.mean()
        if per_token.dim() == 3:
            per_token = per_token.mean(-1)
        mask = mask.to(per_token.dtype)
        return (per_token * mask).sum() / mask.sum()
