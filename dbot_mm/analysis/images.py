"""Images for the analysis tools, normalised as the model saw them in
training.

The model's data preprocessor (mean, std, and whether it flips BGR to RGB)
is read from its config when there is one, so an analysis sees the same
input statistics as the pretraining; without a config the ImageNet values
mmpretrain uses are assumed.
"""
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ['image_paths', 'load_images', 'normalisation_from_config',
           'IMAGENET_NORM']

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                  '.tiff', '.webp')
#: mean, std (RGB order, 0-255) and to_rgb of mmpretrain's ImageNet configs
IMAGENET_NORM = ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375), True)


def _spread(items: list, num: Optional[int]) -> list:
    """``num`` items evenly spread over the list, so a sorted class-folder
    tree gives every class, not only the first one."""
    if num is None or num >= len(items):
        return items
    idx = np.linspace(0, len(items) - 1, num).round().astype(int)
    return [items[i] for i in idx]


def image_paths(images: Optional[str] = None,
                data_root: Optional[str] = None,
                ann_file: str = '',
                data_prefix: str = '',
                num: Optional[int] = None) -> List[str]:
    """Paths of ``num`` images from a folder tree or an mmpretrain dataset.

    Args:
        images: folder searched recursively for image files.
        data_root, ann_file, data_prefix: an mmpretrain ``CustomDataset``
            (annotation file or class folders), e.g. ``data/fashion_mnist``,
            ``meta/val.txt``, ``val``.
        num: how many; evenly spread over the sorted list. None: all.
    """
    if (images is None) == (data_root is None):
        raise ValueError('give exactly one of images= and data_root=')
    if images is not None:
        if not osp.isdir(images):
            raise FileNotFoundError(f'image folder not found: {images}')
        found = sorted(
            osp.join(root, f) for root, _, files in os.walk(images)
            for f in files if f.lower().endswith(IMG_EXTENSIONS))
    else:
        from mmpretrain.datasets import CustomDataset
        ds = CustomDataset(
            data_root=data_root, ann_file=ann_file, data_prefix=data_prefix,
            pipeline=[], lazy_init=False)
        found = [ds.get_data_info(i)['img_path'] for i in range(len(ds))]
    if not found:
        raise FileNotFoundError(
            f'no images in {images or osp.join(data_root, data_prefix)}')
    return _spread(found, num)


def normalisation_from_config(cfg) -> Tuple[Sequence[float],
                                             Sequence[float], bool]:
    """(mean, std, to_rgb) of a config's data preprocessor, else ImageNet."""
    if cfg is None:
        return IMAGENET_NORM
    model = cfg.get('model', {}) or {}
    pre = model.get('data_preprocessor') or cfg.get('data_preprocessor')
    if not pre or 'mean' not in pre:
        return IMAGENET_NORM
    mean, std = list(pre['mean']), list(pre['std'])
    to_rgb = bool(pre.get('to_rgb', pre.get('bgr_to_rgb', False)))
    return mean, std, to_rgb


def load_images(paths: Sequence[str],
                img_size: Tuple[int, int],
                mean: Sequence[float] = IMAGENET_NORM[0],
                std: Sequence[float] = IMAGENET_NORM[1],
                to_rgb: bool = True) -> torch.Tensor:
    """(N, 3, H, W) float tensor: resize the short side to ``img_size``,
    centre-crop, normalise.

    Images are read as mmcv does (BGR) and flipped to RGB only when the
    model's preprocessor does (``to_rgb``), so channel order and statistics
    match its training.
    """
    import mmcv
    h, w = img_size
    out = []
    for p in paths:
        img = mmcv.imread(p, flag='color')  # BGR uint8, grey -> 3 channels
        if img is None:
            raise IOError(f'cannot read image {p}')
        ih, iw = img.shape[:2]
        if (ih, iw) != (h, w):
            scale = max(h / ih, w / iw)
            img = mmcv.imresize(
                img, (max(w, round(iw * scale)), max(h, round(ih * scale))),
                interpolation='bicubic')
            top = (img.shape[0] - h) // 2
            left = (img.shape[1] - w) // 2
            img = img[top:top + h, left:left + w]
        if to_rgb:
            img = img[..., ::-1]
        out.append(np.ascontiguousarray(img))
    x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float()
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - mean_t) / std_t
