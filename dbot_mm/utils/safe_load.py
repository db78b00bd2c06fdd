"""Safe checkpoint loading for mmengine on torch >= 2.6.

mmengine 0.10.7 calls ``torch.load(filename)`` with torch's default
``weights_only``. Since torch 2.6 that default is ``True``, so every
checkpoint written by an mmengine ``Runner`` (its ``message_hub`` holds
``HistoryBuffer`` objects and numpy arrays) fails to load. The tempting fix,
``weights_only=False`` / ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``, would let any
downloaded ``.pth`` run code. Instead we keep ``weights_only=True`` and allow
exactly the globals that mmengine and numpy checkpoints need; anything else
is refused with an error naming the file, the offending globals and the
opt-in for a file the user trusts.
"""
import contextlib
import os
import os.path as osp
import pickle
import warnings
from typing import Iterable, List, Optional

import numpy as np
import torch

TRUSTED_ENV = 'DBOT_MM_TRUSTED_CHECKPOINTS'

_trusted_paths = set()


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs globals outside the allow-list."""


class CheckpointFormatError(ValueError):
    """The file is not a (complete) PyTorch checkpoint at all."""


def checkpoint_kind(path) -> str:
    """What the file looks like from its first bytes and zip directory:
    ``'zip'`` (``torch.save``), ``'torchscript'`` (``torch.jit.save``),
    ``'broken-zip'``, ``'pickle'`` (legacy ``torch.save`` or a raw pickle),
    ``'empty'`` or ``'other'``."""
    import zipfile
    from .torchscript_weights import is_torchscript
    with open(path, 'rb') as f:
        head = f.read(4)
    if not head:
        return 'empty'
    if head.startswith(b'PK'):
        if is_torchscript(path):
            return 'torchscript'
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return 'broken-zip'
        return 'zip' if any(n.endswith('data.pkl') for n in names) \
            else 'other'
    # pickle protocol 2+ starts with PROTO; torch's legacy format too
    return 'pickle' if head[:1] == b'\x80' else 'other'


def _describe_not_a_checkpoint(path, kind: str) -> str:
    if kind == 'empty':
        return f'{path} is empty, not a PyTorch checkpoint.'
    if kind == 'broken-zip':
        return (f'{path} is not a complete checkpoint: its zip archive is '
                'unreadable (truncated by a crash or an interrupted copy?).')
    with open(path, 'rb') as f:
        head = f.read(16)
    return (f'{path} is not a PyTorch checkpoint (neither a torch.save zip '
            f'archive nor a pickle; it starts with {head!r}).')


def _numpy_globals() -> List[tuple]:
    """numpy objects that plain arrays, scalars and dtypes pickle into.

    Listed under both the numpy-2 (``numpy._core``) and numpy-1
    (``numpy.core``) module paths, so checkpoints written by either load.
    """
    core = np._core if hasattr(np, '_core') else np.core
    multiarray = core.multiarray
    items = [(np.ndarray, 'numpy.ndarray'), (np.dtype, 'numpy.dtype')]
    for mod_name in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        items.append((multiarray._reconstruct, f'{mod_name}._reconstruct'))
        items.append((multiarray.scalar, f'{mod_name}.scalar'))
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:  # numpy >= 1.25 pickles dtypes by their class
        for name in dir(dtypes):
            obj = getattr(dtypes, name)
            if isinstance(obj, type) and issubclass(obj, np.dtype):
                items.append((obj, f'numpy.dtypes.{name}'))
    return items


def _history_buffer_getattr(obj, name):
    """The only ``getattr`` a checkpoint may call.

    mmengine pickles ``HistoryBuffer._statistics_methods`` as
    ``getattr(HistoryBuffer, 'mean')`` and friends. A general ``getattr``
    in an unpickler is a step towards arbitrary attribute access, so this
    one answers only for statistics methods of ``HistoryBuffer``.
    """
    from mmengine.logging import HistoryBuffer
    if (isinstance(obj, type) and issubclass(obj, HistoryBuffer)
            and isinstance(name, str) and not name.startswith('_')
            and callable(getattr(HistoryBuffer, name, None))):
        return getattr(obj, name)
    raise UnsafeCheckpointError(
        f'checkpoint asked for getattr({obj!r}, {name!r}), which is not on '
        'the allow-list (only HistoryBuffer statistics methods are)')


def allowed_globals() -> List:
    """Globals besides torch's own that a checkpoint may reference."""
    from mmengine.logging import HistoryBuffer
    items = [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')]
    items += _numpy_globals()
    return items


def _allowed_names() -> set:
    names = set()
    for g in allowed_globals():
        names.add(g[1] if isinstance(g, tuple) else
                  f'{g.__module__}.{g.__qualname__}')
    return names


def _normalise(path) -> str:
    return osp.realpath(osp.expanduser(str(path)))


def _env_trusted() -> set:
    value = os.environ.get(TRUSTED_ENV, '')
    return {_normalise(p) for p in value.split(os.pathsep) if p.strip()}


def is_trusted(filename) -> bool:
    if not isinstance(filename, (str, os.PathLike)):
        return False
    path = _normalise(filename)
    return path in _trusted_paths or path in _env_trusted()


def trust_checkpoint(*paths) -> None:
    """Opt in to a full (unsafe) pickle load for these exact files."""
    for p in paths:
        _trusted_paths.add(_normalise(p))


@contextlib.contextmanager
def trusted_checkpoints(paths: Iterable):
    """Temporarily trust ``paths`` (see :func:`trust_checkpoint`)."""
    added = {_normalise(p) for p in paths} - _trusted_paths
    _trusted_paths.update(added)
    try:
        yield
    finally:
        _trusted_paths.difference_update(added)


def safe_load(filename, map_location=None, trusted: Optional[bool] = None,
              mmap: bool = False):
    """``torch.load`` with ``weights_only=True`` and the mmengine allow-list.

    Args:
        filename: path or file object.
        map_location: as for ``torch.load``.
        trusted: force a full pickle load (``True``) for a file you trust;
            by default only files registered with :func:`trust_checkpoint`
            or listed in ``$DBOT_MM_TRUSTED_CHECKPOINTS`` are loaded fully.
        mmap: memory-map the tensors (zip checkpoints only), for reading
            keys and shapes without reading the data.

    Raises:
        UnsafeCheckpointError: the file needs globals outside the
            allow-list, or is a TorchScript archive (a program).
        CheckpointFormatError: the file is not a (complete) checkpoint.
    """
    if trusted is None:
        trusted = is_trusted(filename)
    if trusted:
        warnings.warn(f'Loading trusted checkpoint {filename} with a full '
                      'pickle load (weights_only=False).')
        return torch.load(filename, map_location=map_location,
                          weights_only=False)
    is_path = isinstance(filename, (str, os.PathLike)) and \
        osp.isfile(filename)
    kind = checkpoint_kind(filename) if is_path else 'zip'
    if kind == 'torchscript':
        raise UnsafeCheckpointError(
            f'Refused to load "{filename}": it is a TorchScript archive (a '
            'program; loading it runs its code), not a checkpoint. Nothing in '
            'it was executed. Convert its weights with tools/model_converters/'
            'clip_to_dbot_teacher.py, which reads them without running it.')
    if kind not in ('zip', 'pickle'):
        raise CheckpointFormatError(
            _describe_not_a_checkpoint(filename, kind))
    if kind == 'pickle' and not _is_legacy_torch_file(filename):
        # a raw pickle: torch.load cannot read it anyway; name what it holds
        offending = _offending_globals(filename, kind)
        if not offending:
            raise CheckpointFormatError(
                f'{filename} is a plain pickle, not a checkpoint written by '
                'torch.save; nothing in it was executed.')
        raise UnsafeCheckpointError(
            f'Refused to load checkpoint "{filename}": it is a plain pickle '
            'that references objects outside the safe allow-list: '
            f'{", ".join(offending)}. Nothing in it was executed.')
    kwargs = dict(mmap=True) if mmap and kind == 'zip' and is_path else {}
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            return torch.load(filename, map_location=map_location,
                              weights_only=True, **kwargs)
    except pickle.UnpicklingError as e:
        error = e
        offending = _offending_globals(filename, kind)
        if offending:
            offending = f' It references: {", ".join(offending)}.'
        elif 'not on the allow-list' in str(e):  # our getattr
            why = _first_line(e).replace('WeightsUnpickler error: ', '')
            offending = f' {why[:1].upper()}{why[1:]}.'
        else:
            raise CheckpointFormatError(
                f'{filename} cannot be read as a checkpoint: '
                f'{_first_line(e)}') from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        if not is_path:
            raise
        raise CheckpointFormatError(
            f'{filename} cannot be read as a checkpoint (truncated, or not '
            f'written by torch.save?): {_first_line(e)}') from None
    raise UnsafeCheckpointError(
        f'Refused to load checkpoint "{filename}": it contains objects '
        f'outside the safe allow-list.{offending} Nothing in it was '
        'executed. If you trust this file, opt in for it alone with '
        f'{TRUSTED_ENV}={filename} (os.pathsep-separated list) or '
        f'dbot_mm.utils.trust_checkpoint("{filename}"). '
        f'(torch said: {_first_line(error)})') from None


def _first_line(error) -> str:
    """The informative line of a torch error (its weights-only errors
    start with advice to load the file unsafely)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.startswith('Weights only load failed'):
            continue
        if line.endswith('WeightsUnpickler error:') and i + 1 < len(lines):
            return 'WeightsUnpickler error: ' + lines[i + 1]
        if 'WeightsUnpickler error' in line or 'GLOBAL' in line:
            return line[line.find('WeightsUnpickler error'):] \
                if 'WeightsUnpickler error' in line else line
    return lines[0] if lines else type(error).__name__


# torch's legacy (pre-zip) format starts with this pickled magic number
_LEGACY_MAGIC = b'\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19'


def _is_legacy_torch_file(path) -> bool:
    with open(path, 'rb') as f:
        return f.read(len(_LEGACY_MAGIC)) == _LEGACY_MAGIC


def _pickle_globals(path, max_pickles: int = 6) -> List[str]:
    """``module.name`` of every global the pickles at the start of ``path``
    reference (a legacy ``torch.save`` file is several pickles followed by
    raw storage bytes), found by reading opcodes, never by unpickling."""
    import pickletools
    names, strings, memo = [], [], {}
    with open(path, 'rb') as f:
        for _ in range(max_pickles):
            try:
                for op, arg, _pos in pickletools.genops(f):
                    if op.name in ('GLOBAL', 'INST'):
                        names.append(arg.replace(' ', '.'))
                    elif op.name == 'STACK_GLOBAL' and len(strings) >= 2:
                        names.append(f'{strings[-2]}.{strings[-1]}')
                    elif isinstance(arg, str) and 'UNICODE' in op.name:
                        strings.append(arg)
                    elif op.name in ('BINPUT', 'LONG_BINPUT', 'PUT') and \
                            strings:
                        memo[arg] = strings[-1]
                    elif op.name == 'MEMOIZE' and strings:
                        memo[len(memo)] = strings[-1]
                    elif op.name in ('BINGET', 'LONG_BINGET', 'GET') and \
                            isinstance(memo.get(arg), str):
                        strings.append(memo[arg])
            except Exception:  # noqa: BLE001  (raw storage bytes follow)
                break
    return names


def _offending_globals(filename, kind: str) -> List[str]:
    """Globals of the file that neither torch's weights-only loader nor our
    allow-list accept."""
    try:
        if kind == 'zip':
            names = torch.serialization.get_unsafe_globals_in_checkpoint(
                filename)
        elif kind == 'pickle':
            names = _pickle_globals(filename)
        else:
            return []
    except Exception:  # noqa: BLE001  (unreadable: a format error then)
        return []
    try:
        from torch._weights_only_unpickler import _get_allowed_globals
        allowed = set(_get_allowed_globals())
    except (ImportError, AttributeError):
        allowed = set()
    allowed |= _allowed_names()
    return sorted({n for n in names if n not in allowed})


def _load_from_local(filename, map_location):
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_load(filename, map_location=map_location)


def _load_from_http(filename, map_location=None, model_dir=None,
                    progress=False):
    """Download (rank 0 first) into torch's hub cache, then load safely."""
    from mmengine.dist import get_dist_info
    from torch.hub import download_url_to_file, get_dir
    from urllib.parse import urlparse
    rank, world_size = get_dist_info()
    model_dir = model_dir or osp.join(get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = osp.join(model_dir, osp.basename(urlparse(filename).path))
    if rank == 0 and not osp.exists(cached):
        download_url_to_file(filename, cached, progress=progress)
    if world_size > 1:
        torch.distributed.barrier()
    return safe_load(cached, map_location=map_location)


def patch_mmengine() -> None:
    """Route mmengine's local and http checkpoint loading through here."""
    from mmengine.runner import checkpoint as ckpt
    ckpt.CheckpointLoader.register_scheme(
        prefixes='', loader=_load_from_local, force=True)
    ckpt.CheckpointLoader.register_scheme(
        prefixes=('http://', 'https://'), loader=_load_from_http, force=True)
    ckpt.load_from_local = _load_from_local
    ckpt.load_from_http = _load_from_http
