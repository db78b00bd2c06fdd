"""Fashion-MNIST mosaics: small COCO and ADE20K stand-ins for det / seg.

The downstream configs must run end to end on a machine without COCO or
ADE20K.  Real Fashion-MNIST items are pasted at random positions and scales
onto a black canvas; only the layout is synthetic.  Each scene is written
twice, in the two layouts mmdet and mmseg expect::

    out_dir/
      coco/train2017/000000000001.jpg ...        # train scenes
      coco/val2017/000000000001.jpg ...          # val scenes
      coco/annotations/instances_train2017.json
      coco/annotations/instances_val2017.json
      ade/images/training/ADE_train_00000001.jpg
      ade/annotations/training/ADE_train_00000001.png
      ade/images/validation/ADE_val_00000001.jpg
      ade/annotations/validation/ADE_val_00000001.png
      .mosaic_done.json                          # the arguments of the run

Train scenes use items of the Fashion-MNIST train split and val scenes items
of its t10k split, so no object is shared between the two.  COCO category
ids are 1..10 in Fashion-MNIST label order; the ADE label PNGs hold 0 for
background and label + 1 for objects, so ``reduce_zero_label=True`` gives
0..9 and 255 (ignored) for background, as for ADE20K.

Where objects may overlap (``max_occlusion > 0``) later items lie on top;
every instance mask, box and area is its *visible* part, and an item is only
placed if each earlier one keeps at least ``1 - max_occlusion`` of its
pixels.  Every scene is drawn from its own generator seeded by
``(seed, split, index)``, so scene i is the same whatever the set size.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np

from .done_marker import reuse_or_clear, write_marker
from .fashion_mnist import DEFAULT_SRC, FASHION_MNIST_CLASSES, \
    read_fashion_mnist

_MARKER = '.mosaic_done.json'
_FORMAT_VERSION = 1
_SPLITS = {
    # split: (Fashion-MNIST split, COCO folder, ADE folder, ADE file prefix)
    'train': ('train', 'train2017', 'training', 'ADE_train'),
    'val': ('val', 'val2017', 'validation', 'ADE_val'),
}


def coco_categories() -> List[dict]:
    return [dict(id=i + 1, name=name, supercategory='fashion')
            for i, name in enumerate(FASHION_MNIST_CLASSES)]


def _item_crop(item: np.ndarray, scale: float,
               mask_thr: int) -> Tuple[np.ndarray, np.ndarray]:
    """Resize one item and crop it to its mask, so placement works on the
    pixels that will really be drawn."""
    from PIL import Image

    size = max(1, int(round(item.shape[0] * scale)))
    img = np.asarray(Image.fromarray(item).resize((size, size),
                                                  Image.BILINEAR))
    mask = img > mask_thr
    if not mask.any():
        return img[:0, :0], mask[:0, :0]
    ys, xs = np.nonzero(mask)
    crop = np.s_[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return img[crop], mask[crop]


def make_scene(rng: np.random.Generator,
               images: np.ndarray,
               labels: np.ndarray,
               canvas_size: Tuple[int, int] = (128, 128),
               objects_per_image: Tuple[int, int] = (1, 5),
               scale_range: Tuple[float, float] = (1.0, 2.0),
               max_occlusion: float = 0.0,
               mask_thr: int = 10,
               max_tries: int = 50) -> Tuple[np.ndarray, np.ndarray, list]:
    """Paste random items on a black canvas.

    Returns:
        ``(image, owner, labels)``: the (H, W) uint8 canvas, an (H, W) int
        map holding the instance index drawn at each pixel (-1 background),
        and the Fashion-MNIST label of each instance.  Instances that end up
        fully hidden cannot occur: placement rejects them.
    """
    h, w = canvas_size
    canvas = np.zeros((h, w), np.uint8)
    owner = np.full((h, w), -1, np.int64)
    boxes, full_area, inst_labels = [], [], []
    wanted = int(rng.integers(objects_per_image[0], objects_per_image[1] + 1))
    tries = 0
    while len(inst_labels) < wanted and tries < max_tries:
        tries += 1
        k = int(rng.integers(len(images)))
        patch, mask = _item_crop(images[k], rng.uniform(*scale_range),
                                 mask_thr)
        ph, pw = mask.shape
        if ph == 0 or ph > h or pw > w:
            continue
        y, x = int(rng.integers(h - ph + 1)), int(rng.integers(w - pw + 1))
        if max_occlusion <= 0:
            if any(x < bx + bw and bx < x + pw and y < by + bh and by < y + ph
                   for bx, by, bw, bh in boxes):
                continue
        else:
            covered = owner[y:y + ph, x:x + pw][mask]
            lost = np.bincount(covered[covered >= 0],
                               minlength=len(inst_labels))
            left = np.bincount(owner[owner >= 0],
                               minlength=len(inst_labels)) - lost
            if np.any(left < (1 - max_occlusion) * np.asarray(full_area)):
                continue
        region = np.s_[y:y + ph, x:x + pw]
        canvas[region][mask] = patch[mask]
        owner[region][mask] = len(inst_labels)
        boxes.append((x, y, pw, ph))
        full_area.append(int(mask.sum()))
        inst_labels.append(int(labels[k]))
    return canvas, owner, inst_labels


def mask_to_bbox(mask: np.ndarray) -> List[float]:
    """COCO xywh of the mask's pixels (x + w is one past the last column,
    as pycocotools' ``toBbox`` computes it)."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() + 1 - x0),
            float(ys.max() + 1 - y0)]


def mask_to_segmentation(mask: np.ndarray,
                         mask_format: str = 'rle') -> Union[dict, list]:
    """COCO segmentation of a bool mask.

    'rle' (compressed, via pycocotools) is exact, holes included, and is what
    mmdet's default ``LoadAnnotations(with_mask=True)`` decodes.  'polygon'
    is for pipelines with ``poly2mask=False``: the outer outline of each
    part along pixel edges, so it rasterises to the mask with its holes
    filled (COCO polygons cannot hold holes).
    """
    if mask_format == 'rle':
        from pycocotools import mask as mask_utils
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return dict(size=[int(s) for s in rle['size']],
                    counts=rle['counts'].decode('ascii'))
    if mask_format == 'polygon':
        import cv2

        # On the 2x upsampled mask an outline pixel u lies in the left (even)
        # or right (odd) half of an original pixel, so ceil(u / 2) is the
        # pixel corner the outline passes; pycocotools then fills exactly
        # the enclosed pixels.
        up = np.kron(mask.astype(np.uint8), np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        return [((c.reshape(-1, 2) + 1) // 2).reshape(-1).astype(float)
                .tolist() for c in contours if len(c) >= 3]
    raise ValueError(f"mask_format must be 'rle' or 'polygon', "
                     f'got {mask_format!r}')


def _is_complete(out_dir: str, marker: dict) -> bool:
    for split, (_, coco_dir, ade_dir, prefix) in _SPLITS.items():
        n = marker['counts'][split]
        paths = [
            osp.join(out_dir, 'coco', 'annotations',
                     f'instances_{coco_dir}.json'),
        ]
        if n:
            paths += [
                osp.join(out_dir, 'coco', coco_dir, f'{n:012d}.jpg'),
                osp.join(out_dir, 'ade', 'images', ade_dir,
                         f'{prefix}_{n:08d}.jpg'),
                osp.join(out_dir, 'ade', 'annotations', ade_dir,
                         f'{prefix}_{n:08d}.png'),
            ]
        if not all(osp.isfile(p) for p in paths):
            return False
    return True


def _write_split(out_dir: str, split: str, num: int, src: str, seed: int,
                 mask_format: str, jpeg_quality: int, **scene_kw) -> int:
    from PIL import Image

    fm_split, coco_dir, ade_dir, prefix = _SPLITS[split]
    images, labels = read_fashion_mnist(fm_split, src)
    split_id = list(_SPLITS).index(split)
    dirs = dict(
        coco=osp.join(out_dir, 'coco', coco_dir),
        ann=osp.join(out_dir, 'coco', 'annotations'),
        ade_img=osp.join(out_dir, 'ade', 'images', ade_dir),
        ade_ann=osp.join(out_dir, 'ade', 'annotations', ade_dir))
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)

    coco_images, coco_anns = [], []
    for i in range(1, num + 1):
        rng = np.random.default_rng([seed, split_id, i])
        canvas, owner, inst_labels = make_scene(rng, images, labels,
                                                **scene_kw)
        h, w = canvas.shape
        rgb = Image.fromarray(canvas).convert('RGB')
        file_name = f'{i:012d}.jpg'
        rgb.save(osp.join(dirs['coco'], file_name), quality=jpeg_quality)
        rgb.save(osp.join(dirs['ade_img'], f'{prefix}_{i:08d}.jpg'),
                 quality=jpeg_quality)
        # ADE convention: 0 background, label + 1 for objects.
        lut = np.concatenate([[0], np.asarray(inst_labels) + 1])
        seg = lut[owner + 1].astype(np.uint8)
        Image.fromarray(seg, mode='L').save(
            osp.join(dirs['ade_ann'], f'{prefix}_{i:08d}.png'))

        coco_images.append(dict(id=i, file_name=file_name, height=h,
                                width=w))
        for k, label in enumerate(inst_labels):
            mask = owner == k
            coco_anns.append(dict(
                id=len(coco_anns) + 1, image_id=i, category_id=label + 1,
                bbox=mask_to_bbox(mask), area=int(mask.sum()), iscrowd=0,
                segmentation=mask_to_segmentation(mask, mask_format)))

    coco = dict(
        info=dict(description='Fashion-MNIST mosaics: synthetic layouts of '
                  'real Fashion-MNIST items (dbot_mm)', version='1.0'),
        licenses=[], images=coco_images, annotations=coco_anns,
        categories=coco_categories())
    with open(osp.join(dirs['ann'], f'instances_{coco_dir}.json'), 'w') as f:
        json.dump(coco, f)
    return len(coco_anns)


def generate_mosaic(out_dir: str,
                    src: str = DEFAULT_SRC,
                    num_train: int = 200,
                    num_val: int = 50,
                    canvas_size: Union[int, Sequence[int]] = 128,
                    objects_per_image: Sequence[int] = (1, 5),
                    scale_range: Sequence[float] = (1.0, 2.0),
                    max_occlusion: float = 0.0,
                    mask_thr: int = 10,
                    mask_format: str = 'rle',
                    jpeg_quality: int = 95,
                    seed: int = 0,
                    force: bool = False) -> Dict[str, int]:
    """Write the COCO and ADE20K layouts of a mosaic set (see module doc).

    Args:
        out_dir: Root of ``coco/`` and ``ade/``.
        src: Folder with the Fashion-MNIST idx files.
        num_train, num_val: Number of scenes per split.
        canvas_size: Canvas side, or (height, width).
        objects_per_image: Inclusive range of items tried per scene (fewer
            end up there when no free place is found in 50 tries).
        scale_range: Item scale range; 1.0 is 28 px.
        max_occlusion: 0 keeps item boxes disjoint; e.g. 0.3 lets later
            items hide up to 30 % of an earlier item's pixels.
        mask_thr: Item pixels above this value belong to the object; the
            rest are not drawn.
        mask_format: 'rle' (exact) or 'polygon' for the COCO masks.
        seed: Base seed; the whole output is a function of the arguments.
        force: Rewrite even when the same run is complete on disk.

    Returns:
        Scene and instance counts, e.g. ``{'train': 200, 'val': 50,
        'train_instances': 612, 'val_instances': 148}``.
    """
    if isinstance(canvas_size, int):
        canvas_size = (canvas_size, canvas_size)
    canvas_size = tuple(int(s) for s in canvas_size)
    if not 0 <= max_occlusion < 1:
        raise ValueError(f'max_occlusion must be in [0, 1), '
                         f'got {max_occlusion}')
    lo, hi = objects_per_image
    if not 0 <= lo <= hi:
        raise ValueError(f'bad objects_per_image {objects_per_image}')
    scene_kw = dict(canvas_size=canvas_size,
                    objects_per_image=(int(lo), int(hi)),
                    scale_range=tuple(float(s) for s in scale_range),
                    max_occlusion=float(max_occlusion),
                    mask_thr=int(mask_thr))
    args = dict(version=_FORMAT_VERSION, src=osp.abspath(src),
                num_train=num_train, num_val=num_val, seed=seed,
                mask_format=mask_format, jpeg_quality=jpeg_quality,
                **{k: list(v) if isinstance(v, tuple) else v
                   for k, v in scene_kw.items()})
    done = reuse_or_clear(out_dir, _MARKER, args, force, _is_complete,
                          ('coco', 'ade'))
    if done is not None:
        return done

    counts = {}
    for split, num in (('train', num_train), ('val', num_val)):
        counts[f'{split}_instances'] = _write_split(
            out_dir, split, num, src, seed, mask_format, jpeg_quality,
            **scene_kw)
        counts[split] = num
    write_marker(out_dir, _MARKER, args, counts)
    return counts
