"""Reading, checking and writing checkpoints for the model-zoo converters.

Converted files are what users feed to month-long runs, so every converter
checks its output against the module it is meant for (built on the ``meta``
device, so a ViT-H costs no memory): keys the target lacks or that nothing
filled are reported, and a wrong shape is an error naming the key, never a
silent ``strict=False`` load.
"""
import argparse
import hashlib
import os
import os.path as osp
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import torch
from mmpretrain.models.utils import resize_pos_embed
from torch import nn

from dbot_mm.utils.safe_load import (TRUSTED_ENV, CheckpointFormatError,
                                     UnsafeCheckpointError, is_trusted,
                                     safe_load)
from dbot_mm.utils.torchscript_weights import (TorchScriptError,
                                               is_torchscript,
                                               read_torchscript_weights)

StateDict = Dict[str, torch.Tensor]

# Heads of the standard ViT widths (ViT-H/14 and CLIP-H use 80-wide heads,
# so ``width // 64`` would be wrong for them).
_HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16,
                   1664: 16}


class ConversionError(ValueError):
    """A checkpoint cannot be converted as asked (layout or shape)."""


#: What the converter CLIs report as one line (a refused or unreadable
#: input, a layout they cannot convert), not as a traceback.
CLI_ERRORS = (UnsafeCheckpointError, CheckpointFormatError, ConversionError,
              FileNotFoundError)


@dataclass
class ConversionReport:
    """What a conversion did, for the CLI to print and tests to assert on."""

    unused_source_keys: List[str] = field(default_factory=list)
    missing_keys: List[str] = field(default_factory=list)
    unexpected_keys: List[str] = field(default_factory=list)
    resized_keys: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def merge(self, other: 'ConversionReport',
              prefix: str = '') -> 'ConversionReport':
        self.unused_source_keys += other.unused_source_keys
        self.missing_keys += [prefix + k for k in other.missing_keys]
        self.unexpected_keys += [prefix + k for k in other.unexpected_keys]
        self.resized_keys += [prefix + k for k in other.resized_keys]
        self.notes += other.notes
        return self

    def __str__(self) -> str:
        lines = []
        for title, keys in (('source keys not converted',
                             self.unused_source_keys),
                            ('missing in the output', self.missing_keys),
                            ('not used by the target model',
                             self.unexpected_keys),
                            ('resized', self.resized_keys)):
            lines.append(f'{title}: {len(keys)}')
            lines += [f'  {k}' for k in _compact(keys)]
        lines += [f'note: {n}' for n in self.notes]
        return '\n'.join(lines)


def _compact(keys: Sequence[str], limit: int = 20) -> List[str]:
    keys = list(keys)
    if len(keys) <= limit:
        return keys
    return keys[:limit] + [f'... and {len(keys) - limit} more']


def load_source(path: str) -> dict:
    """Load a third-party checkpoint without running pickled code.

    Official MAE/dBOT training files carry their ``argparse.Namespace``
    (plain strings and numbers), so that one class is allowed on top of the
    dbot_mm allow-list; anything else still goes through
    :func:`dbot_mm.utils.safe_load.safe_load` and its opt-in for trusted
    files. TorchScript archives (OpenAI CLIP) are never given to
    ``torch.jit.load``, which would run their code: their weights are read
    from the archive's pickle with a restricted unpickler
    (:mod:`dbot_mm.utils.torchscript_weights`); an archive that cannot be
    read that way is refused unless the file is trusted
    (``DBOT_MM_TRUSTED_CHECKPOINTS``). safetensors files are read with
    safetensors.
    """
    path = osp.expanduser(str(path))
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} does not exist')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return dict(load_file(path, device='cpu'))
    if is_torchscript(path):
        try:
            return dict(read_torchscript_weights(path))
        except TorchScriptError as e:
            if not is_trusted(path):
                why = str(e).replace(f'{path}: ', '', 1)
                raise UnsafeCheckpointError(
                    f'Refused to load TorchScript archive "{path}": {why}. '
                    'Reading its weights any further would mean running its '
                    'code (torch.jit.load); nothing in it was executed. If '
                    f'you trust this file, opt in for it alone with '
                    f'{TRUSTED_ENV}={path}.') from None
        module = torch.jit.load(path, map_location='cpu')  # trusted file
        return {k: v.detach().clone() for k, v in module.state_dict().items()}
    with torch.serialization.safe_globals([argparse.Namespace]):
        return safe_load(path, map_location='cpu')


def extract_state_dict(ckpt: Mapping,
                       keys: Iterable[str] = ('model', 'state_dict',
                                              'module')) -> StateDict:
    """The tensors of a checkpoint, whichever wrapper key holds them."""
    for key in keys:
        inner = ckpt.get(key) if isinstance(ckpt, Mapping) else None
        if isinstance(inner, Mapping) and inner and all(
                isinstance(v, torch.Tensor) for v in inner.values()):
            ckpt = inner
            break
    state = OrderedDict(
        (k, v) for k, v in ckpt.items() if isinstance(v, torch.Tensor))
    if not state:
        raise ConversionError(
            'no tensors found; expected a state dict or a dict with one '
            f'of {list(keys)} (top-level keys: {list(ckpt)[:10]})')
    # DDP-wrapped saves prefix every key with "module."
    if all(k.startswith('module.') for k in state):
        state = OrderedDict((k[len('module.'):], v) for k, v in state.items())
    return state


def strip_prefix(state: Mapping[str, torch.Tensor],
                 prefix: str) -> StateDict:
    return OrderedDict((k[len(prefix):], v) for k, v in state.items()
                       if k.startswith(prefix))


def add_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    return OrderedDict((prefix + k, v) for k, v in state.items())


def num_heads_for(width: int) -> int:
    return _HEADS_BY_WIDTH.get(width, max(1, width // 64))


def resize_grid(pos_embed: torch.Tensor, dst_len: int,
                num_extra_tokens: int = 1,
                mode: str = 'bicubic') -> torch.Tensor:
    """Resize a (1, extra + H*W, C) table of square grids to ``dst_len``."""
    src = int(round((pos_embed.shape[1] - num_extra_tokens)**.5))
    dst = int(round((dst_len - num_extra_tokens)**.5))
    if src * src + num_extra_tokens != pos_embed.shape[1] or \
            dst * dst + num_extra_tokens != dst_len:
        raise ConversionError(
            f'cannot resize pos_embed of {pos_embed.shape[1]} tokens to '
            f'{dst_len}: only square grids (+{num_extra_tokens} cls) are '
            'supported')
    return resize_pos_embed(pos_embed.float(), (src, src), (dst, dst), mode,
                            num_extra_tokens).to(pos_embed.dtype)


def check_against(module: nn.Module,
                  state: Mapping[str, torch.Tensor],
                  prefix: str = '',
                  resizable: Sequence[str] = ('pos_embed', ),
                  ignore_missing: Sequence[str] = ()) -> ConversionReport:
    """Compare converted tensors with what ``module`` expects.

    Position tables (``resizable``) of another grid are resized in
    ``state`` (in place) like the official ``interpolate_pos_embed``; any
    other shape difference raises :class:`ConversionError` naming the key.
    Missing keys are reported unless listed in ``ignore_missing``
    (exact names or prefixes ending in '.').
    """
    report = ConversionReport()
    expected = module.state_dict()
    mine = {k[len(prefix):]: k for k in state if k.startswith(prefix)}
    for name, dst in expected.items():
        if name not in mine:
            if not any(name == p or (p.endswith('.') and name.startswith(p))
                       for p in ignore_missing):
                report.missing_keys.append(prefix + name)
            continue
        key = mine[name]
        src = state[key]
        if tuple(src.shape) == tuple(dst.shape):
            continue
        if name in resizable and src.dim() == 3 and \
                src.shape[-1] == dst.shape[-1]:
            state[key] = resize_grid(src, dst.shape[1])
            report.resized_keys.append(
                f'{key}: {tuple(src.shape)} -> {tuple(dst.shape)}')
            continue
        raise ConversionError(
            f'shape mismatch for "{key}": converted {tuple(src.shape)} but '
            f'the target {type(module).__name__} expects {tuple(dst.shape)}; '
            f'check the arch (width, depth, patch size, image size).')
    report.unexpected_keys = sorted(
        key for name, key in mine.items() if name not in expected)
    return report


def build_on_meta(cfg: dict) -> nn.Module:
    """Build a registered module without allocating its weights.

    Modules whose constructor reads tensor values (``.tolist()``) cannot be
    built on the meta device; they are built on the CPU instead.
    """
    import dbot_mm  # noqa: F401  (registers the dbot_mm modules)
    from mmpretrain.registry import MODELS
    try:
        with torch.device('meta'):
            return MODELS.build(cfg)
    except (NotImplementedError, RuntimeError):
        return MODELS.build(cfg)


def save_checkpoint(state: Mapping[str, torch.Tensor], path: str,
                    meta: Optional[dict] = None) -> str:
    """Write ``{'meta', 'state_dict'}`` loadable with ``weights_only``."""
    path = osp.expanduser(str(path))
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    ckpt = dict(
        meta=dict(meta or {}),
        state_dict=OrderedDict(
            (k, v.detach().cpu().contiguous()) for k, v in state.items()))
    torch.save(ckpt, path)
    return path


def sha256_prefix(path: str, length: int = 8) -> str:
    sha = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            sha.update(chunk)
    return sha.hexdigest()[:length]


def summary(report: ConversionReport, cfg: Optional[dict], out_path: str,
            cfg_name: str = 'model') -> str:
    """What a converter CLI prints: the report, the config, the file."""
    from mmengine.config import Config
    lines = [str(report)]
    if cfg is not None:
        lines += [f'checked against (use in your config):',
                  Config(dict(**{cfg_name: cfg})).pretty_text.strip()]
    lines.append(f'saved {out_path}')
    return '\n'.join(lines)


def converter_parser(doc: str, src_help: str,
                     dst_help: str = 'output .pth',
                     src: str = 'src',
                     dst: str = 'dst') -> argparse.ArgumentParser:
    """The parser every converter script starts from: the first line of
    its docstring as description, then the input and output files."""
    parser = argparse.ArgumentParser(description=doc.split('\n')[0])
    parser.add_argument(src, help=src_help)
    parser.add_argument(dst, help=dst_help)
    return parser

