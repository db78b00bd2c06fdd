from .base import (BaseTarget, ImageTarget, fill_from_student, masked_ids,
                   select_tokens)
from .vit_teacher import ViTTeacher
from .pretrained_teacher import PretrainedTeacher  # noqa: F401
from .ema_teacher import EMATeacher
from .hog_target import HOGTarget
from .pixel_target import PixelTarget

__all__ = [
    'ViTTeacher', 'PretrainedTeacher', 'EMATeacher', 'HOGTarget',
    'PixelTarget', 'BaseTarget', 'ImageTarget', 'fill_from_student',
    'select_tokens', 'masked_ids'
]
