from .base import (BaseTarget, masked_ids, select_for, select_tokens,
                   target_spec)
from .vit_teacher import ViTTeacher
from .pretrained_teacher import PretrainedTeacher  # noqa: F401
from .ema_teacher import EMATeacher
from .hog_target import HOGTarget
from .pixel_target import PixelTarget

__all__ = [
    'ViTTeacher', 'PretrainedTeacher', 'EMATeacher', 'HOGTarget',
    'PixelTarget', 'BaseTarget', 'target_spec', 'select_for',
    'select_tokens', 'masked_ids'
]
