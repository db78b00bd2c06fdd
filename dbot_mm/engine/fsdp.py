"""FSDP wrapping for dBOT (``configs/pretrain/*_fsdp.py``).

One FSDP unit for the student encoder and one for the decoder. The frozen
teacher is left out of FSDP (``ignored_modules=['teacher']``): it has no
gradients or optimizer state to shard, and a stage boundary copies the
student into it in place. Coarse units keep that boundary simple: ``DBOT``
gathers each unit whole (``summon_full_params``) to bootstrap the teacher
and redraw the student, and no unit is nested in another.
"""
import dataclasses
from contextlib import ExitStack, contextmanager
from typing import Iterable

import torch
from mmengine.registry import FUNCTIONS
from torch import nn


def fsdp_class():
    """``FullyShardedDataParallel``, or None in a torch without it."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # torch built without distributed
        return None
    return FullyShardedDataParallel


def unwrap(module: nn.Module) -> nn.Module:
    """The module an FSDP unit wraps; any other module itself."""
    fsdp = fsdp_class()
    return module.module if fsdp is not None and isinstance(
        module, fsdp) else module


@contextmanager
def full_params(*modules):
    """Unsharded parameters of FSDP-wrapped parts, written back on exit.

    Between steps a unit's parameters are flat shards; a stage boundary must
    read and redraw whole tensors. Every rank runs this with the same seed,
    so the write-back is consistent. Plain modules pass through untouched.
    """
    fsdp = fsdp_class()
    with ExitStack() as stack:
        for m in modules:
            if fsdp is not None and isinstance(m, fsdp):
                stack.enter_context(
                    fsdp.summon_full_params(m, writeback=True))
        yield


@contextmanager
def whole_children(parent: nn.Module, names: Iterable[str]):
    """``parent``'s children ``names`` as plain modules with whole
    parameters.

    Without FSDP this does nothing. Each FSDP unit among them is gathered
    and, for the duration, swapped for the module it wraps, so that
    ``state_dict``, ``apply`` and the mmengine init chain see ordinary
    tensors; edits are written back to the shards on exit.
    """
    units = {name: parent._modules[name]
             for name in names
             if parent._modules.get(name) is not None
             and unwrap(parent._modules[name]) is not parent._modules[name]}
    with full_params(*units.values()):
        for name, unit in units.items():
            parent._modules[name] = unit.module
        try:
            yield
        finally:
            parent._modules.update(units)


@FUNCTIONS.register_module()
def dbot_student_wrap_policy(module, recurse: bool, nonwrapped_numel: int,
                             **kwargs) -> bool:
    """FSDP ``auto_wrap_policy``: wrap ``DBOTViT`` and ``DBOTDecoder``."""
    if recurse:
        return True
    from dbot_mm.models.backbones import DBOTViT
    from dbot_mm.models.necks import DBOTDecoder
    return isinstance(module, (DBOTViT, DBOTDecoder))


def _fsdp_units(model):
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    return [m for m in model.modules() if isinstance(m, FSDP)]


def _register_strategy():
    """``FSDPStrategy`` with resume fixed for torch >= 2.1 and for CPU.

    Without CUDA the FSDP units are placed on the CPU (``device_id='cpu'``
    unless the config sets one), so the same config runs with gloo on CPU.

    Each parameter's real dimensionality is recorded before the wrap, so
    that weight decay follows the same rules as without FSDP
    (``FrozenSkipOptimWrapperConstructor``); the optimizer is built from
    flattened views.

    Two fixes, both needed for a resumed run to repeat the uninterrupted one
    bit for bit:

    * mmengine 0.10.7 passes ``(state_dict, model, optim)`` positionally to
      ``FSDP.optim_state_dict_to_load``, whose signature became ``(model,
      optim, optim_state_dict)``: every FSDP resume fails with "unhashable
      type: 'dict'". Extra wrapper entries (the AMP ``loss_scaler``) are kept
      out of FSDP's conversion and handed back to the wrapper.
    * With ``use_orig_params=True``, ``FSDP.optim_state_dict`` (torch 2.14,
      ``_allgather_orig_param_states``) all-gathers every optimizer state
      (``exp_avg``, then ``exp_avg_sq``) into one reused buffer and returns
      views of it, made independent only by the ``.cpu()`` of
      ``offload_to_cpu=True`` (what ``state_dict_cfg='full'`` sets) or by a
      ``clone()`` without offloading. When the compute device is the CPU,
      ``.cpu()`` is a no-op, so every saved state but the last aliases the
      buffer and is overwritten: each checkpoint held ``exp_avg ==
      exp_avg_sq``, and a resumed AdamW stepped with the wrong first moment.
      Offloading to the CPU is meaningless when the units already compute
      there; it is switched off for CPU units so that FSDP clones instead.
      GPU runs are unaffected (their ``.cpu()`` copies) and keep the
      configured offload.
    """
    try:
        from mmengine._strategy import FSDPStrategy
        from mmengine.registry import STRATEGIES
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    except ImportError:  # torch without distributed / old mmengine
        return None

    from .optimizers.frozen_skip_constructor import record_param_ndims

    @STRATEGIES.register_module(force=True)
    class DBOTFSDPStrategy(FSDPStrategy):

        def _wrap_model(self, model):
            if not torch.cuda.is_available():
                # mmengine defaults FSDP's device_id to LOCAL_RANK (a GPU);
                # without CUDA the units compute on the CPU (gloo runs).
                self.model_wrapper = dict(
                    self.model_wrapper or dict(
                        type='MMFullyShardedDataParallel'))
                self.model_wrapper.setdefault('device_id', 'cpu')
            if model is not None:
                # the optimizer is built after the wrap, from flattened
                # views: keep the real shapes for the decay rules
                record_param_ndims(model)
            model = super()._wrap_model(model)
            units = _fsdp_units(model) if model is not None else []
            on_cpu = any(
                getattr(u, 'compute_device', None) is not None
                and u.compute_device.type == 'cpu' for u in units)
            osd_cfg = self.optim_state_dict_config
            if on_cpu and getattr(osd_cfg, 'offload_to_cpu', False):
                self.optim_state_dict_config = dataclasses.replace(
                    osd_cfg, offload_to_cpu=False)
                FSDP.set_state_dict_type(model, self.state_dict_type,
                                         self.state_dict_config,
                                         self.optim_state_dict_config)
            return model

        def load_optim_state_dict(self, state_dict: dict) -> None:
            state_dict = dict(state_dict)
            extras = {k: state_dict.pop(k) for k in ('loss_scaler',
                                                      'base_param_settings')
                      if k in state_dict}
            optim_state = FSDP.optim_state_dict_to_load(
                model=self.model,
                optim=self.optim_wrapper.optimizer,
                optim_state_dict=state_dict)
            optim_state.update(extras)
            self.optim_wrapper.load_state_dict(optim_state)

    return DBOTFSDPStrategy


DBOTFSDPStrategy = _register_strategy()
