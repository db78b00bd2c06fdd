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

Under FSDP with ``use_orig_params=True`` the optimizer is built after the
wrap, when every original parameter is a flattened 1-D view of its shard
(or an empty tensor): mmengine's ``flat_decay_mult`` rule (``param.ndim ==
1``) would then exempt every weight matrix from weight decay. The strategy
records each parameter's real dimensionality before wrapping
(:func:`record_param_ndims`) and this constructor applies the rule to it.
"""
import logging
from collections import OrderedDict

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

__all__ = ['FrozenSkipOptimWrapperConstructor', 'record_param_ndims']

_NDIM = '_dbot_orig_ndim'


def record_param_ndims(model: nn.Module) -> None:
    """Remember every parameter's dimensionality before a wrapper (FSDP)
    flattens it."""
    for p in model.parameters():
        setattr(p, _NDIM, p.dim())


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
        start = len(params)
        self._add_params(params, module, prefix, **kwargs)
        self._undo_flattened_flat_rule(params[start:], module, prefix)

    def _undo_flattened_flat_rule(self, groups, module, prefix):
        """Groups of ``module``'s own parameters that got ``flat_decay_mult``
        only because a wrapper flattened them go back to the default decay,
        as the same parameters get without the wrapper."""
        cfg = self.paramwise_cfg
        if cfg.get('flat_decay_mult') is None or self.base_wd is None:
            return
        names = {id(p): n for n, p in module.named_parameters(recurse=False)}
        is_dwconv = (isinstance(module, nn.Conv2d)
                     and module.in_channels == module.groups)
        for group in groups:
            param = group['params'][0]
            name = names.get(id(param))
            if name is None or getattr(param, _NDIM, 1) == 1:
                continue  # not this module's, or really 1-D
            full = f'{prefix}.{name}' if prefix else name
            if any(k in full for k in cfg.get('custom_keys', {})):
                continue  # a custom key decided
            if is_dwconv and cfg.get('dwconv_decay_mult') is not None:
                continue
            if param.dim() == 1:  # only the flattening made it 1-D
                group.pop('weight_decay', None)

    def _add_params(self, params, module, prefix='', **kwargs):
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
