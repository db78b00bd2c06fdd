"""Optimizer constructor that leaves frozen sub-modules out quietly.

mmengine's default constructor logs one warning per ``requires_grad=False``
parameter when a ``paramwise_cfg`` is set: a dBOT ViT-B teacher alone is
~150 lines at every start. Frozen parameters are skipped either way; this
constructor skips a wholly frozen sub-module (the teacher, a frozen sin-cos
table) with one summary line instead, so the param groups are identical to
the default constructor's.

The groups are handed to the optimizer as plain dicts: mmengine builds them
as ``ConfigDict``s, on which dynamo's tracing of ``AdamW.step`` fails
(``compile=True``; ``'UserDefinedDictVariable' object has no attribute
'items'``).
"""
import logging
from collections import OrderedDict

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

__all__ = ['FrozenSkipOptimWrapperConstructor']


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FrozenSkipOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` minus the per-frozen-param noise."""

    def __call__(self, model: nn.Module):
        self._skipped = {}
        wrapper = super().__call__(model)
        groups = wrapper.optimizer.param_groups
        groups[:] = [dict(g) for g in groups]
        if self._skipped:
            summary = ', '.join(f'{name} ({n})'
                                for name, n in self._skipped.items())
            print_log(f'not optimised (requires_grad=False): {summary}',
                      logger='current', level=logging.INFO)
        return wrapper

    def add_params(self, params, module, prefix='', **kwargs):
        all_params = list(module.parameters())
        if prefix and all_params and not any(p.requires_grad
                                             for p in all_params):
            self._skipped[prefix] = len(all_params)
            return
        own = module._parameters
        frozen = [n for n, p in own.items()
                  if p is not None and not p.requires_grad]
        if not frozen:
            return super().add_params(params, module, prefix, **kwargs)
        # frozen parameters of a trainable module (a fixed sin-cos table):
        # hidden from the parent's loop for the call, the dict restored as
        # it was (same object, same order)
        for n in frozen:
            self._skipped[f'{prefix}.{n}' if prefix else n] = 1
        module._parameters = OrderedDict(
            (n, p) for n, p in own.items() if n not in frozen)
        try:
            super().add_params(params, module, prefix, **kwargs)
        finally:
            module._parameters = own
