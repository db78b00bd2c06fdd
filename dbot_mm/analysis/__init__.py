"""Property analysis of ViT encoders (the paper's figures).

Nothing here imports matplotlib at import time: the plotting functions load
it when called, so ``import dbot_mm.analysis`` stays cheap and works on
machines without a display or without matplotlib.
"""
from .attention_distance import (AttentionDistanceMeter, attention_distance,
                                 attention_probs, mean_attention_distance,
                                 patch_distance_matrix,
                                 plot_attention_distance,
                                 uniform_attention_distance,
                                 write_attention_distance_csv)
from .images import image_paths, load_images, normalisation_from_config
from .linear_probe import linear_probe
from .singular_values import (effective_rank, normalized_singular_values,
                              plot_singular_values, token_features,
                              write_singular_values_csv)
from .vit_loading import load_vit

__all__ = [
    'AttentionDistanceMeter', 'attention_distance', 'attention_probs',
    'mean_attention_distance', 'patch_distance_matrix',
    'plot_attention_distance', 'uniform_attention_distance',
    'write_attention_distance_csv',
    'image_paths', 'load_images', 'normalisation_from_config', 'linear_probe',
    'effective_rank', 'normalized_singular_values', 'plot_singular_values',
    'token_features',
    'write_singular_values_csv', 'load_vit'
]
