from .autocast_optim_wrapper import AutocastOptimWrapper
from .frozen_skip_constructor import (FrozenSkipOptimWrapperConstructor,
                                      record_param_ndims)
from .layer_decay_constructor import (LayerDecayOptimWrapperConstructor,
                                      layer_decay_adamw)

__all__ = [
    'AutocastOptimWrapper', 'FrozenSkipOptimWrapperConstructor',
    'LayerDecayOptimWrapperConstructor', 'layer_decay_adamw',
    'record_param_ndims']
