"""Mixed precision on any device, bf16 without a loss scaler.

mmengine 0.10.7's ``AmpOptimWrapper`` refuses to start without a GPU
(an assert in ``__init__``), although its autocast context supports CPU bf16.
It also always builds a ``GradScaler``, whose ``step`` reads the found-inf
flag back to the host every iteration; bf16 has float32's exponent range, so
the scale is never needed there and that sync is pure cost.
"""
from typing import Union

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` that also runs on CPU and skips scaling for bf16.

    Args:
        loss_scale: as ``AmpOptimWrapper``; ignored for bfloat16.
        dtype: autocast dtype. Defaults to ``'bfloat16'`` (the one dtype CPU
            autocast supports). ``'float16'`` needs a GPU and uses
            ``AmpOptimWrapper`` unchanged.
        use_fsdp, **kwargs: as ``AmpOptimWrapper``.
    """

    def __init__(self,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Union[str, torch.dtype] = 'bfloat16',
                 use_fsdp: bool = False,
                 **kwargs) -> None:
        if isinstance(dtype, str):
            if dtype not in self.valid_dtypes:
                raise ValueError(f'dtype should be one of {self.valid_dtypes}'
                                 f', got {dtype!r}')
            dtype = getattr(torch, dtype)
        if dtype != torch.bfloat16:
            super().__init__(
                loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp,
                **kwargs)
            return
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        self.cast_dtype = dtype
        # A disabled scaler passes scale/unscale_/step/update straight
        # through and keeps the state-dict layout of AmpOptimWrapper.
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
