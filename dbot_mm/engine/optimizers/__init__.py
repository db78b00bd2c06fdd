from .autocast_optim_wrapper import AutocastOptimWrapper
from .frozen_skip_constructor import (FrozenSkipOptimWrapperConstructor,
                                      record_param_ndims)
from .layer_decay_constructor import LayerDecayOptimWrapperConstructor

__all__ = [
    'AutocastOptimWrapper', 'FrozenSkipOptimWrapperConstructor',
    'LayerDecayOptimWrapperConstructor',
    'record_param_ndims']
