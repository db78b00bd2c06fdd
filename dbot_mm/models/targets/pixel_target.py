"""Pixels as the target: MAE's per-patch normalised pixels.

The patchify and the per-patch normalisation are mmpretrain's
``MAEPretrainHead.construct_target`` (``norm_pix=True`` is the official MAE
``--norm_pix_loss``: ``(p - mean) / sqrt(var + 1e-6)`` per patch, unbiased
variance). Only the hidden patches count and there is no cls target, so a
pixel config pairs this with ``MaskedDistillHead(loss=DistillL2Loss,
norm_target=False)``: MAE's mean squared error over the masked patches.
"""
from typing import Optional

import torch
from mmpretrain.models.heads import MAEPretrainHead
from mmpretrain.registry import MODELS

from .base import ImageTarget


@MODELS.register_module()
class PixelTarget(ImageTarget):
    """Per-patch (normalised) pixels of the full image.

    Args:
        img_size (int): Input size, as the student's. Defaults to 224.
        patch_size (int): Student patch size. Defaults to 16.
        in_channels (int): Image channels. Defaults to 3.
        norm_pix (bool): Normalise every patch over its pixels (MAE's best
            target). Defaults to True.
        init_cfg (dict, optional): Defaults to None.

    Attributes:
        out_dims (int): ``patch_size ** 2 * in_channels``.
    """

    origin = 'pixels'  # DBOT.teacher_info

    def __init__(self,
                 img_size: int = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 norm_pix: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(img_size, patch_size, init_cfg=init_cfg)
        self.norm_pix = norm_pix
        self.out_dims = patch_size**2 * in_channels
        # Only its patchify / normalisation are used; its criterion never
        # runs (the DBOT head computes the loss).
        self.pixels = MAEPretrainHead(
            loss=dict(type='PixelReconstructionLoss', criterion='L2'),
            norm_pix=norm_pix,
            patch_size=patch_size,
            in_channels=in_channels)

    def compute(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.pixels.construct_target(inputs)
