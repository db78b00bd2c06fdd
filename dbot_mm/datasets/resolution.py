"""ImageNet pipelines at another resolution, for the high-resolution
fine-tuning configs (``configs/cls/**/*-448px_*.py``)."""
from typing import List, Sequence


def pipeline_at_size(pipeline: Sequence[dict], img_size: int) -> List[dict]:
    """``pipeline`` with its crops and test resize set to ``img_size``.

    Training crops (``RandomResizedCrop``) take the new size; the test
    resize (``ResizeEdge``) equals the centre crop, i.e. crop_pct 1.0, as the
    official ``build_transform`` does above 224 px (MAE / dBOT
    ``util/datasets.py``, BEiT ``datasets.py``).
    """
    keys = dict(RandomResizedCrop='scale', ResizeEdge='scale',
                CenterCrop='crop_size')
    out = []
    for t in pipeline:
        t = dict(t)
        if t['type'] in keys:
            t[keys[t['type']]] = img_size
        out.append(t)
    return out
