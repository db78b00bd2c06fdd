"""Image loading that survives (or loudly refuses) damaged files.

A week-long pretraining run reads millions of files; one unreadable image
should neither kill it silently in a dataloader worker nor be skipped
without a trace. :class:`RobustLoadImageFromFile` decodes with Pillow (which,
unlike OpenCV, refuses a truncated JPEG instead of returning a half-grey
image) and applies one policy, a config key:

- ``on_error='raise'``: the first unreadable file stops the run with
  :class:`CorruptImageError` naming the file;
- ``on_error='skip'``: the file is logged (WARNING, with a running count)
  and the sample is dropped; mmengine's ``BaseDataset`` then draws another
  index, as it does for any ``None`` sample. More than ``max_skipped``
  distinct unreadable files in one process, or ``max_consecutive`` failed
  loads in a row, raise, so a broken data set can turn neither into a
  silent loop nor into a run on a handful of images.

Every decoded image comes out as ``H x W x 3`` uint8 (BGR by default, like
``LoadImageFromFile``): grayscale, palette, CMYK and 16-bit images are
converted, an alpha channel is dropped (or composited onto
``alpha_background``).
"""
import io
import logging
from typing import Optional, Sequence

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio
from mmengine.logging import print_log
from mmpretrain.registry import TRANSFORMS
from PIL import Image

__all__ = [
    'CorruptImageError', 'RobustLoadImageFromFile', 'decode_image_3ch',
    'skipped_images'
]


class CorruptImageError(RuntimeError):
    """An image file could not be read or decoded; the message names it."""


# Per process (each dataloader worker counts its own): path -> reason.
_SKIPPED = {}
_CONSECUTIVE = [0]  # failed loads since the last good one


def skipped_images() -> dict:
    """``{path: reason}`` of the files skipped so far in this process."""
    return dict(_SKIPPED)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.integer):
        # 16-bit (and 32-bit 'I' holding 16-bit data) to 8 bit
        top = 65535 if arr.max(initial=0) > 255 else 255
        return np.clip(
            np.rint(arr.astype(np.float64) * (255. / top)), 0, 255).astype(
                np.uint8)
    return np.clip(np.rint(arr.astype(np.float64)), 0, 255).astype(np.uint8)


def decode_image_3ch(data: bytes,
                     channel_order: str = 'bgr',
                     alpha_background: Optional[Sequence[int]] = None
                     ) -> np.ndarray:
    """Decode ``data`` fully (truncation raises) into ``H x W x 3`` uint8.

    Args:
        data: the encoded file.
        channel_order: ``'bgr'`` (as mmcv's loaders) or ``'rgb'``.
        alpha_background: RGB colour to composite transparent pixels onto;
            None drops the alpha channel (as ``LoadImageFromFile`` does).
    """
    with Image.open(io.BytesIO(data)) as img:
        img.load()  # decodes everything: a truncated file raises OSError
        mode = img.mode
        if mode in ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I', 'F'):
            gray = _to_uint8(np.asarray(img))
            rgb = np.repeat(gray[..., None], 3, axis=2)
        else:
            has_alpha = mode in ('RGBA', 'LA', 'PA', 'La', 'RGBa') or (
                mode == 'P' and 'transparency' in img.info)
            if has_alpha and alpha_background is not None:
                rgba = img.convert('RGBA')
                canvas = Image.new('RGBA', rgba.size,
                                   tuple(alpha_background) + (255, ))
                img_rgb = Image.alpha_composite(canvas, rgba).convert('RGB')
            else:
                img_rgb = img.convert('RGB')
            rgb = np.asarray(img_rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ValueError(f'decoded to shape {rgb.shape}, expected H x W x 3')
    if channel_order == 'bgr':
        rgb = rgb[..., ::-1]
    elif channel_order != 'rgb':
        raise ValueError(f"channel_order must be 'bgr' or 'rgb', got "
                         f'{channel_order!r}')
    return np.ascontiguousarray(rgb)


@TRANSFORMS.register_module()
class RobustLoadImageFromFile(BaseTransform):
    """``LoadImageFromFile`` with a policy for unreadable files.

    Required keys: ``img_path``. Added keys: ``img``, ``img_shape``,
    ``ori_shape``.

    Args:
        on_error (str): ``'skip'`` (log, count, drop the sample) or
            ``'raise'`` (stop with :class:`CorruptImageError`). Use
            ``'raise'`` in val / test pipelines: mmengine refuses a dropped
            sample at test time. Defaults to ``'skip'``.
        max_skipped (int): Distinct unreadable files one process may skip
            before the run is stopped (the data set is then damaged, not a
            few files). Defaults to 100.
        max_consecutive (int): Failed loads in a row (the replacement
            samples drawn for a skipped one failing too) that stop the run.
            Defaults to 50.
        channel_order (str): ``'bgr'`` (default, as mmcv) or ``'rgb'``.
        alpha_background (Sequence[int], optional): RGB colour for
            transparent pixels; None drops the alpha channel.
        to_float32 (bool): Return float32 instead of uint8.
        backend_args (dict, optional): mmengine file backend arguments.
    """

    def __init__(self,
                 on_error: str = 'skip',
                 max_skipped: int = 100,
                 max_consecutive: int = 50,
                 channel_order: str = 'bgr',
                 alpha_background: Optional[Sequence[int]] = None,
                 to_float32: bool = False,
                 backend_args: Optional[dict] = None) -> None:
        if on_error not in ('skip', 'raise'):
            raise ValueError(f"RobustLoadImageFromFile: on_error must be "
                             f"'skip' or 'raise', got {on_error!r}")
        if not isinstance(max_skipped, int) or max_skipped < 0:
            raise ValueError('RobustLoadImageFromFile: max_skipped must be a '
                             f'non-negative int, got {max_skipped!r}')
        if not isinstance(max_consecutive, int) or max_consecutive < 1:
            raise ValueError('RobustLoadImageFromFile: max_consecutive must '
                             f'be a positive int, got {max_consecutive!r}')
        if channel_order not in ('bgr', 'rgb'):
            raise ValueError("RobustLoadImageFromFile: channel_order must be "
                             f"'bgr' or 'rgb', got {channel_order!r}")
        self.on_error = on_error
        self.max_skipped = max_skipped
        self.max_consecutive = max_consecutive
        self.channel_order = channel_order
        self.alpha_background = alpha_background
        self.to_float32 = to_float32
        self.backend_args = backend_args

    def transform(self, results: dict) -> Optional[dict]:
        filename = results['img_path']
        try:
            data = fileio.get(filename, backend_args=self.backend_args)
            img = decode_image_3ch(data, self.channel_order,
                                   self.alpha_background)
        except Exception as e:  # noqa: BLE001  (any decoder failure)
            reason = f'{type(e).__name__}: {e}'
            if self.on_error == 'raise':
                raise CorruptImageError(
                    f'Cannot read image {filename} ({reason}). Fix or remove '
                    'the file, or set on_error=\'skip\' in the '
                    'RobustLoadImageFromFile transform.') from e
            _SKIPPED[filename] = reason
            _CONSECUTIVE[0] += 1
            if len(_SKIPPED) > self.max_skipped:
                raise CorruptImageError(
                    f'{len(_SKIPPED)} unreadable images in this process, '
                    f'more than max_skipped={self.max_skipped} (last: '
                    f'{filename}: {reason}); the data set looks damaged.'
                ) from e
            if _CONSECUTIVE[0] >= self.max_consecutive:
                raise CorruptImageError(
                    f'{_CONSECUTIVE[0]} image loads in a row failed '
                    f'(max_consecutive={self.max_consecutive}; unreadable: '
                    f'{sorted(_SKIPPED)[:5]}, last {filename}: {reason}); '
                    'the data set looks damaged.') from e
            print_log(
                f'Skipped unreadable image {filename} ({reason}); '
                f'{len(_SKIPPED)} skipped so far in this process '
                f'(max_skipped={self.max_skipped}).',
                logger='current', level=logging.WARNING)
            return None
        _CONSECUTIVE[0] = 0
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(on_error={self.on_error!r}, '
                f'max_skipped={self.max_skipped}, '
                f'max_consecutive={self.max_consecutive}, '
                f'channel_order={self.channel_order!r}, '
                f'alpha_background={self.alpha_background!r}, '
                f'to_float32={self.to_float32})')
