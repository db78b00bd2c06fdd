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


def _load_tool(name):
    """Import a command-line tool by path (``tools/`` is not a package):
    ``name`` relative to ``tools/`` without ``.py``."""
    import importlib.util
    import os.path as osp
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        '_tool_' + name.replace('/', '_'),
        osp.join(root, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def tool_loader():
    return _load_tool


@pytest.fixture(scope='module')
def train_tool():
    return _load_tool('train')
