import importlib.util
import os.path as osp

import pytest

TOOLS = osp.join(osp.dirname(__file__), '..', '..', 'tools',
                 'dataset_converters')


@pytest.fixture
def load_tool():
    """Import a converter CLI by path: tools/ is not a package."""

    def load(name):
        spec = importlib.util.spec_from_file_location(
            f'_tool_{name}', osp.join(TOOLS, f'{name}.py'))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
