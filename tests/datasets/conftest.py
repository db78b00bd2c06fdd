import pytest


@pytest.fixture
def load_tool(tool_loader):
    """A converter CLI of tools/dataset_converters/, imported by path."""
    return lambda name: tool_loader(f'dataset_converters/{name}')
