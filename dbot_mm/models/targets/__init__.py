from .vit_teacher import ViTTeacher

__all__ = ['ViTTeacher']
