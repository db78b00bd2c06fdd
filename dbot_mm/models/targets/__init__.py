from .vit_teacher import ViTTeacher
from .pretrained_teacher import PretrainedTeacher  # noqa: F401

__all__ = ['ViTTeacher']
