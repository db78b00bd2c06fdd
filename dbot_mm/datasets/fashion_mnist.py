"""Fashion-MNIST as an image folder that mmpretrain reads unchanged.

The demo and the tests need a small, real, labelled image set that is on
the machine without a download: Debian's ``dataset-fashion-mnist`` package.
:func:`convert_fashion_mnist` turns its gzipped idx files into::

    out_dir/
      train/<class_name>/<index>.png     # <index>: position in the idx file
      val/<class_name>/<index>.png       # val = the official t10k split
      meta/train.txt  meta/val.txt       # "<class_name>/<index>.png <label>"
      meta/classes.txt                   # one class name a line, label order
      .fashion_mnist_done.json           # the arguments of the finished run

so that ``dict(type='CustomDataset', data_root=out_dir,
ann_file='meta/train.txt', data_prefix='train')`` (or ``ImageNet``) loads
it.  The annotation files are required: the folder names sorted
alphabetically are *not* the label order.
"""
import gzip
import os
import os.path as osp
import struct
from typing import Dict, Optional, Tuple

import numpy as np

from .done_marker import reuse_or_clear, write_marker

DEFAULT_SRC = '/usr/share/datasets/fashion-mnist'

# Label order of the idx files; '/' and spaces replaced to be folder-safe.
FASHION_MNIST_CLASSES = ('T-shirt_top', 'Trouser', 'Pullover', 'Dress',
                         'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag',
                         'Ankle_boot')

SPLIT_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'val': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}
_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dims
_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dim
_MARKER = '.fashion_mnist_done.json'
_FORMAT_VERSION = 1
_HINT = ('Install the data with `apt-get install dataset-fashion-mnist` or '
         'pass the folder holding the four *-ubyte.gz files as src.')


class FashionMNISTError(RuntimeError):
    """Missing or corrupt idx file; the message names the file."""


def _read_idx(path: str, magic: int, ndim: int) -> np.ndarray:
    if not osp.isfile(path):
        raise FashionMNISTError(f'Fashion-MNIST file not found: {path}. '
                                f'{_HINT}')
    try:
        with gzip.open(path, 'rb') as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise FashionMNISTError(
            f'Fashion-MNIST file is not a readable gzip file: {path} ({e}). '
            f'{_HINT}') from e
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise FashionMNISTError(f'Fashion-MNIST file is truncated: {path}')
    found = struct.unpack('>I', raw[:4])[0]
    if found != magic:
        raise FashionMNISTError(
            f'Bad magic number {found} (expected {magic}) in {path}: not an '
            f'idx file of the expected kind, or corrupt. {_HINT}')
    dims = struct.unpack(f'>{ndim}I', raw[4:header])
    size = int(np.prod(dims))
    if len(raw) != header + size:
        raise FashionMNISTError(
            f'Fashion-MNIST file has {len(raw) - header} data bytes, the '
            f'header says {size} (dims {dims}): {path} is corrupt.')
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def read_fashion_mnist(split: str,
                       src: str = DEFAULT_SRC
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """Load one split ('train' or 'val' = t10k) as (N, 28, 28) uint8 images
    and (N,) int64 labels, validating both files."""
    if split not in SPLIT_FILES:
        raise ValueError(f'split must be one of {list(SPLIT_FILES)}, '
                         f'got {split!r}')
    img_file, lbl_file = (osp.join(src, f) for f in SPLIT_FILES[split])
    images = _read_idx(img_file, _IMAGES_MAGIC, 3)
    labels = _read_idx(lbl_file, _LABELS_MAGIC, 1).astype(np.int64)
    if len(images) != len(labels):
        raise FashionMNISTError(
            f'{img_file} holds {len(images)} images but {lbl_file} holds '
            f'{len(labels)} labels.')
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise FashionMNISTError(f'Label {labels.max()} out of range 0-9 in '
                                f'{lbl_file}.')
    return images, labels


def balanced_subset(labels: np.ndarray,
                    num: Optional[int],
                    seed: Optional[int] = None) -> np.ndarray:
    """Indices of ``num`` samples, as even across classes as possible.

    Without a seed the first samples of each class in file order are taken,
    so a smaller subset is always contained in a larger one.  With a seed
    they are drawn at random (still deterministic).  The remainder of
    ``num / num_classes`` goes to the lowest labels.  Indices are sorted.
    """
    if num is None or num >= len(labels):
        return np.arange(len(labels))
    if num < 0:
        raise ValueError(f'subset size must be >= 0, got {num}')
    classes = np.unique(labels)
    per_class, extra = divmod(num, len(classes))
    rng = np.random.default_rng(seed) if seed is not None else None
    chosen = []
    for i, c in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        want = per_class + (1 if i < extra else 0)
        if want > len(idx):
            raise ValueError(f'class {c} has only {len(idx)} samples, '
                             f'{want} requested')
        if rng is not None:
            idx = rng.permutation(idx)
        chosen.append(idx[:want])
    return np.sort(np.concatenate(chosen))


def pad_images(images: np.ndarray, pad_to: Optional[int]) -> np.ndarray:
    """Zero-pad (N, h, w) to pad_to x pad_to, centred, so that a ViT patch
    of 4, 8 or 16 divides the 32 x 32 result."""
    if pad_to is None:
        return images
    h, w = images.shape[1:]
    if pad_to < max(h, w):
        raise ValueError(f'pad_to={pad_to} is smaller than the images '
                         f'({h}x{w})')
    top, left = (pad_to - h) // 2, (pad_to - w) // 2
    return np.pad(images, ((0, 0), (top, pad_to - h - top),
                           (left, pad_to - w - left)))


def _is_complete(out_dir: str, marker: dict) -> bool:
    """Cheap check that a marked run still has its files."""
    for split in ('train', 'val'):
        ann = osp.join(out_dir, 'meta', f'{split}.txt')
        if not osp.isfile(ann):
            return False
        with open(ann) as f:
            lines = [line for line in f if line.strip()]
        if len(lines) != marker['counts'][split]:
            return False
        for line in (lines[:1] + lines[-1:]):
            rel = line.rsplit(' ', 1)[0]
            if not osp.isfile(osp.join(out_dir, split, rel)):
                return False
    return True


def _write_split(out_dir: str, split: str, images: np.ndarray,
                 labels: np.ndarray, indices: np.ndarray,
                 classes=FASHION_MNIST_CLASSES) -> None:
    from PIL import Image

    for name in classes:
        os.makedirs(osp.join(out_dir, split, name), exist_ok=True)
    lines = []
    for i in indices:
        rel = f'{classes[labels[i]]}/{i:05d}.png'
        Image.fromarray(images[i], mode='L').save(
            osp.join(out_dir, split, rel))
        lines.append(f'{rel} {labels[i]}\n')
    with open(osp.join(out_dir, 'meta', f'{split}.txt'), 'w') as f:
        f.writelines(lines)


def convert_fashion_mnist(out_dir: str,
                          src: str = DEFAULT_SRC,
                          num_train: Optional[int] = None,
                          num_val: Optional[int] = None,
                          pad_to: Optional[int] = None,
                          seed: Optional[int] = None,
                          force: bool = False) -> Dict[str, int]:
    """Write Fashion-MNIST as PNG folders plus mmpretrain annotation files.

    Args:
        out_dir: Folder to write (layout in the module docstring).
        src: Folder with the four gzipped idx files.
        num_train, num_val: Class-balanced subset sizes; None keeps all
            (60000 / 10000).
        pad_to: Zero-pad the 28 x 28 images to this square size (32 gives
            2 pixels on each side); None keeps 28 x 28.
        seed: None takes the first samples of each class; an int draws a
            random class-balanced subset.
        force: Rewrite even when a finished run with the same arguments is
            already there.

    Returns:
        The number of images per split, e.g. ``{'train': 1000, 'val': 200}``.
    """
    if osp.isfile(osp.join(out_dir, SPLIT_FILES['train'][0])):
        raise ValueError(f'out_dir {out_dir} holds the source idx files; '
                         'pass out_dir first and src= second.')
    args = dict(version=_FORMAT_VERSION, src=osp.abspath(src),
                num_train=num_train,
                num_val=num_val, pad_to=pad_to, seed=seed)
    done = reuse_or_clear(out_dir, _MARKER, args, force, _is_complete,
                          ('train', 'val', 'meta'))
    if done is not None:
        return done

    os.makedirs(osp.join(out_dir, 'meta'), exist_ok=True)
    counts = {}
    for split, num in (('train', num_train), ('val', num_val)):
        images, labels = read_fashion_mnist(split, src)
        indices = balanced_subset(labels, num, seed)
        _write_split(out_dir, split, pad_images(images, pad_to), labels,
                     indices)
        counts[split] = int(len(indices))
    with open(osp.join(out_dir, 'meta', 'classes.txt'), 'w') as f:
        f.write('\n'.join(FASHION_MNIST_CLASSES) + '\n')
    write_marker(out_dir, _MARKER, args, counts)
    return counts

