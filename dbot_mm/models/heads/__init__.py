from .masked_distill_head import (DistillCosineLoss, DistillL2Loss,
                                  DistillSmoothL1Loss, MaskedDistillHead)

__all__ = [
    'MaskedDistillHead', 'DistillSmoothL1Loss', 'DistillL2Loss',
    'DistillCosineLoss'
]
