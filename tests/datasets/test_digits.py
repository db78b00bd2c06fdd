"""scikit-learn digits as the demo's second kNN set: real scans in,
mmpretrain-readable folders out, bank and queries disjoint."""
import os
import os.path as osp

import numpy as np
from PIL import Image

from dbot_mm.datasets import DIGITS_CLASSES, convert_digits, read_digits


def _read_ann(path):
    with open(path) as f:
        return [line.split() for line in f if line.strip()]


def test_read_digits_upsamples_real_scans():
    images, labels = read_digits(size=28)
    assert images.shape == (1797, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [
        178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert images.max() == 255 and images[:, 0, 0].max() == 0  # dark border


def test_convert_digits_layout_and_split(tmp_path):
    out = str(tmp_path / 'digits')
    assert convert_digits(out) == dict(train=1000, val=797)
    train = _read_ann(osp.join(out, 'meta', 'train.txt'))
    val = _read_ann(osp.join(out, 'meta', 'val.txt'))
    assert np.bincount([int(y) for _, y in train]).tolist() == [100] * 10
    names = {n.split('/')[1] for n, _ in train}
    assert not names & {n.split('/')[1] for n, _ in val}  # disjoint
    rel, label = val[0]
    assert rel.split('/')[0] == DIGITS_CLASSES[int(label)]
    img = np.asarray(Image.open(osp.join(out, 'val', rel)))
    assert img.shape == (32, 32) and img[:2].max() == 0  # 2 px padding
    with open(osp.join(out, 'meta', 'classes.txt')) as f:
        assert f.read().split() == list(DIGITS_CLASSES)

    # a finished conversion with the same arguments is not redone
    stamp = os.stat(osp.join(out, 'val', rel)).st_mtime_ns
    assert convert_digits(out) == dict(train=1000, val=797)
    assert os.stat(osp.join(out, 'val', rel)).st_mtime_ns == stamp
