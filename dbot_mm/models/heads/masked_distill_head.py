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
    """Per-token ``1 - cos(pred, target)`` (paper's loss ablation)."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: torch.Tensor,
                target: torch.Tensor) -> torch.Tensor:
        return 1 - F.cosine_similarity(pred, target, dim=-1, eps=self.eps)


@MODELS.register_module()
class MaskedDistillHead(BaseModule):
    """Normalise teacher tokens and average a per-token loss over the mask.

    Args:
        loss (dict): Criterion built from ``MODELS``. It may return per-token
            (B, N) or per-element (B, N, C) losses; the latter are averaged
            over channels. Defaults to ``DistillSmoothL1Loss(beta=2.0)``.
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

        Args:
            pred: (B, N, C) decoder output (cls at index 0).
            target: (B, N, C) teacher tokens.
            mask: (B, N), 1 for tokens that count (masked patches and cls).
        """
        if pred.shape != target.shape:
            raise ValueError(
                f'pred {tuple(pred.shape)} and target {tuple(target.shape)} '
                f'differ; the decoder predict_dim must equal the teacher '
                f'width and both must keep the cls token.')
        if mask.shape != pred.shape[:2]:
            raise ValueError(f'mask {tuple(mask.shape)} must be (B, N) = '
                             f'{tuple(pred.shape[:2])}')
        pred = pred.float()
        target = target.detach().float()
        if self.norm_target:
            target = self.normalize(target)
        per_token = self.criterion(pred, target)
        if per_token.dim() == 3:
            per_token = per_token.mean(-1)
        mask = mask.to(per_token.dtype)
        return (per_token * mask).sum() / mask.sum()
