"""Model-zoo converters: official dBOT/MAE, CLIP, and publishing.

Each function returns the converted tensors, a :class:`ConversionReport`
and the model config the tensors were checked against; the CLIs in
``tools/model_converters/`` wrap them.
"""
from .beit import convert_beit, is_beit_layout
from .clip import convert_clip_visual, teacher_meta, visual_state
from .common import (ConversionError, ConversionReport, check_against,
                     extract_state_dict, load_source, save_checkpoint)
from .publish import extract_backbone, publish_backbone
from .vit_official import (convert_official_finetuned,
                           convert_official_pretrain, split_official)

__all__ = [
    'ConversionError', 'ConversionReport', 'check_against', 'convert_beit',
    'convert_clip_visual', 'convert_official_finetuned',
    'convert_official_pretrain', 'extract_backbone', 'extract_state_dict',
    'is_beit_layout', 'load_source', 'publish_backbone', 'save_checkpoint',
    'split_official', 'teacher_meta', 'visual_state'
]
