"""vit_arch reads the one arch definition of configs/_base_/models/."""
from pathlib import Path

import pytest

from dbot_mm.utils.config_arch import vit_arch

CONFIGS = Path(__file__).resolve().parents[2] / 'configs'


@pytest.mark.parametrize('folder', ['cls', 'cls/clip', 'det', 'pretrain',
                                    '_base_/models'])
def test_found_from_any_config_folder(folder):
    assert vit_arch('vit-huge-p14.py', str(CONFIGS / folder)) == dict(
        arch='h', patch_size=14)


def test_missing_arch_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='vit-x.py'):
        vit_arch('vit-x.py', str(tmp_path))
