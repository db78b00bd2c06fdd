"""FSDP wrapping for dBOT (``configs/pretrain/*_fsdp.py``).

One FSDP unit for the student encoder and one for the decoder. The frozen
teacher is left out of FSDP (``ignored_modules=['teacher']``): it has no
gradients or optimizer state to shard, and a stage boundary copies the
student into it in place. Coarse units keep that boundary simple: ``DBOT``
gathers each unit whole (``summon_full_params``) to bootstrap the teacher
and redraw the student, and no unit is nested in another.
"""
from mmengine.registry import FUNCTIONS


@FUNCTIONS.register_module()
def dbot_student_wrap_policy(module, recurse: bool, nonwrapped_numel: int,
                             **kwargs) -> bool:
    """FSDP ``auto_wrap_policy``: wrap ``DBOTViT`` and ``DBOTDecoder``."""
    if recurse:
        return True
    from dbot_mm.models.backbones import DBOTViT
    from dbot_mm.models.necks import DBOTDecoder
    return isinstance(module, (DBOTViT, DBOTDecoder))


def _register_strategy():
    """``FSDPStrategy`` with resume fixed for torch >= 2.1.

    mmengine 0.10.7 passes ``(state_dict, model, optim)`` positionally to
    ``FSDP.optim_state_dict_to_load``, whose signature became ``(model,
    optim, optim_state_dict)``: every FSDP resume fails with "unhashable type:
    'dict'". Extra wrapper entries (the AMP ``loss_scaler``) are kept out of
    FSDP's conversion and handed back to the wrapper.
    """
    try:
        from mmengine._strategy import FSDPStrategy
        from mmengine.registry import STRATEGIES
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    except ImportError:  # torch without distributed / old mmengine
        return None

    @STRATEGIES.register_module(force=True)
    class DBOTFSDPStrategy(FSDPStrategy):

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
