"""HOG as the target: MaskFeat's histograms of oriented gradients.

The features are mmpretrain's ``HOGGenerator`` (Sobel gradients per colour
channel, ``nbins`` orientation bins, Gaussian-weighted magnitudes, summed over
``pool`` x ``pool`` cells and L2-normalised per cell). Its last step groups
the cells of a 14 x 14 patch grid (ViT-B/16 at 224 px); here the grid is the
student's, so the same features line up with any patch grid. For 224 px and
16 px patches the two are identical (tests/models/test_targets.py).

As in MaskFeat, only hidden patches count, there is no cls target and the
histograms are not normalised again: pair with
``MaskedDistillHead(loss=DistillL2Loss, norm_target=False)``.
"""
from typing import Optional

import torch
from mmpretrain.models.selfsup import HOGGenerator
from mmpretrain.registry import MODELS

from .base import ImageTarget


class _PatchGridHOG(HOGGenerator):
    """``HOGGenerator`` whose cells are grouped by a given patch grid."""

    def __init__(self, cells_per_patch: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cells_per_patch = cells_per_patch

    def _reshape(self, hog_feat: torch.Tensor) -> torch.Tensor:
        # (B, C, bins, H', W') -> (B, gh * gw, C * bins * u * u), channels
        # then cell rows then cell columns, as HOGGenerator's unfold order.
        B, C, bins, H, W = hog_feat.shape
        u = self.cells_per_patch
        x = hog_feat.reshape(B, C * bins, H // u, u, W // u, u)
        x = x.permute(0, 2, 4, 1, 3, 5)
        return x.reshape(B, (H // u) * (W // u), C * bins * u * u)


@MODELS.register_module()
class HOGTarget(ImageTarget):
    """HOG features of each patch (MaskFeat target).

    Args:
        img_size (int): Input size, as the student's; must be a multiple of
            ``gaussian_window``. Defaults to 224.
        patch_size (int): Student patch size; a multiple of ``pool``.
            Defaults to 16.
        nbins (int): Orientation bins. Defaults to 9.
        pool (int): Cell size in pixels. Defaults to 8.
        gaussian_window (int): Gaussian weighting window (0: none).
            Defaults to 16.
        init_cfg (dict, optional): Defaults to None.

    Attributes:
        out_dims (int): ``3 * nbins * (patch_size // pool) ** 2`` (108 for
            MaskFeat's ViT-B/16 setting).
    """

    origin = 'hog'  # DBOT.teacher_info

    def __init__(self,
                 img_size: int = 224,
                 patch_size: int = 16,
                 nbins: int = 9,
                 pool: int = 8,
                 gaussian_window: int = 16,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(img_size, patch_size, init_cfg=init_cfg)
        size = img_size if isinstance(img_size, int) else img_size[0]
        if patch_size % pool:
            raise ValueError(f'HOGTarget: patch_size={patch_size} must be a '
                             f'multiple of pool={pool}')
        if gaussian_window and size % gaussian_window:
            raise ValueError(f'HOGTarget: img_size={img_size} must be a '
                             f'multiple of gaussian_window={gaussian_window}')
        self.hog = _PatchGridHOG(
            cells_per_patch=patch_size // pool,
            nbins=nbins,
            pool=pool,
            gaussian_window=gaussian_window)
        self.out_dims = 3 * nbins * (patch_size // pool)**2

    def compute(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.hog(inputs)
