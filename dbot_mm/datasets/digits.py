"""scikit-learn's handwritten digits as an image folder.

A second real, labelled image set that installs offline (it ships inside
the scikit-learn wheel) and that the demo never trains on: a kNN gain on it
says the pretrained encoder learned something about images, not about
Fashion-MNIST.  The 1,797 8 x 8 scans (UCI "Optical Recognition of
Handwritten Digits") are upsampled to 28 x 28 (bicubic) so that strokes
have Fashion-MNIST's scale, zero-padded like it, and written in the layout
of :mod:`dbot_mm.datasets.fashion_mnist` (``train/`` = a class-balanced
kNN bank, ``val/`` = the remaining images).
"""
import os
import os.path as osp
import shutil
from typing import Dict, Tuple

import numpy as np

from .done_marker import reuse_or_clear, write_marker
from .fashion_mnist import (_MARKER, _is_complete, _write_split,
                            balanced_subset, pad_images)

DIGITS_CLASSES = tuple(str(i) for i in range(10))
_FORMAT_VERSION = 1


def read_digits(size: int = 28) -> Tuple[np.ndarray, np.ndarray]:
    """(1797, size, size) uint8 images and (1797,) int64 labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError('The digits set comes with scikit-learn: '
                          '`pip install scikit-learn`') from e
    from PIL import Image
    data = load_digits()
    scans = np.clip(data.images * (255 / 16), 0, 255).astype(np.uint8)
    images = np.stack([
        np.asarray(Image.fromarray(s, mode='L').resize(
            (size, size), Image.BICUBIC)) for s in scans
    ])
    return images, data.target.astype(np.int64)


def convert_digits(out_dir: str,
                   num_train: int = 1000,
                   size: int = 28,
                   pad_to: int = 32,
                   force: bool = False) -> Dict[str, int]:
    """Write the digits as ``train`` (``num_train`` images, class-balanced,
    the first of each class) and ``val`` (the rest) PNG folders."""
    args = dict(version=_FORMAT_VERSION, dataset='sklearn-digits',
                num_train=num_train, size=size, pad_to=pad_to)
    done = reuse_or_clear(out_dir, _MARKER, args, force, _is_complete)
    if done is not None:
        return done
    for sub in ('train', 'val', 'meta'):
        shutil.rmtree(osp.join(out_dir, sub), ignore_errors=True)
    os.makedirs(osp.join(out_dir, 'meta'), exist_ok=True)
    images, labels = read_digits(size)
    images = pad_images(images, pad_to)
    train = balanced_subset(labels, num_train)
    val = np.setdiff1d(np.arange(len(labels)), train)
    counts = {}
    for split, idx in (('train', train), ('val', val)):
        _write_split(out_dir, split, images, labels, idx, DIGITS_CLASSES)
        counts[split] = int(len(idx))
    with open(osp.join(out_dir, 'meta', 'classes.txt'), 'w') as f:
        f.write('\n'.join(DIGITS_CLASSES) + '\n')
    write_marker(out_dir, _MARKER, args, counts)
    return counts
