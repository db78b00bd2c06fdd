"""Fixtures for the model tests; the configs live in dbot_tiny.py."""
import pytest
import torch

from dbot_tiny import IMG, build_dbot, tiny_dbot_cfg


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, IMG, IMG, generator=g)


@pytest.fixture
def make_cfg():
    return tiny_dbot_cfg


@pytest.fixture
def make_dbot():
    return build_dbot
