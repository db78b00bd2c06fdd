from .autocast_optim_wrapper import AutocastOptimWrapper
from .frozen_skip_constructor import FrozenSkipOptimWrapperConstructor
from .layer_decay_constructor import LayerDecayOptimWrapperConstructor

__all__ = [
    'AutocastOptimWrapper', 'FrozenSkipOptimWrapperConstructor',
    'LayerDecayOptimWrapperConstructor']
