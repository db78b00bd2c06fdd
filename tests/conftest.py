import os

# Tests run on CPU only, single-threaded BLAS keeps timings stable on 2 cores.
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import copy  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_default_scope():
    """A test that sets mmengine's default scope (mmdet, mmseg) must not
    leave it to the next one: ``mmpretrain.registry.MODELS.build`` would
    then look types up in the mmseg registry. Same restore as mmengine's
    ``DefaultScope.overwrite_default_scope``."""
    from mmengine.registry import DefaultScope
    saved = copy.copy(DefaultScope._instance_dict)
    yield
    DefaultScope._instance_dict = saved
