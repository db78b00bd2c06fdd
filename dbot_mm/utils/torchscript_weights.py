"""The weights of a TorchScript archive, read without running it.

OpenAI's CLIP releases are TorchScript archives (``torch.jit.save``), not
checkpoints. ``torch.jit.load`` (and ``torch.load(weights_only=False)``,
which dispatches to it) compiles the archive's code and calls the
``__setstate__`` of its scripted classes: a crafted archive runs whatever
that method does (writes files, ...). The module's attributes, though, are
an ordinary pickle (``<archive>/data.pkl``) whose tensors live in
``<archive>/data/<n>`` records. :func:`read_torchscript_weights` unpickles
``data.pkl`` with a restricted unpickler: every ``__torch__.*`` class
becomes an inert record of its attributes, tensors are rebuilt from the raw
records, and any other global is refused. Nothing of the archive's code is
compiled or called.
"""
import io
import pickle
import zipfile
from collections import OrderedDict
from typing import Dict, Optional

import torch

__all__ = [
    'TorchScriptError', 'is_torchscript', 'read_torchscript_weights'
]


class TorchScriptError(pickle.UnpicklingError):
    """A TorchScript archive whose weights cannot be read without running
    its code."""


def _archive_prefix(names) -> Optional[str]:
    """``<prefix>/`` of the top-level ``data.pkl``, or None."""
    for name in names:
        parts = name.split('/')
        if len(parts) == 2 and parts[1] == 'data.pkl':
            return parts[0] + '/'
    return None


def is_torchscript(path) -> bool:
    """True for a TorchScript archive (``constants.pkl`` or ``code/``)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    prefix = _archive_prefix(names)
    return prefix is not None and any(
        n == prefix + 'constants.pkl' or n.startswith(prefix + 'code/')
        for n in names)


class _ScriptObject:
    """Stand-in for a scripted class: keeps the pickled state, runs
    nothing (its ``__setstate__`` only records)."""

    _qualname = '__torch__'

    def __init__(self, *args, **kwargs):
        self._state = None

    def __setstate__(self, state):
        self._state = state

    def __repr__(self):
        return f'<{self._qualname}>'


class _StorageType:
    """What a ``torch.<Type>Storage`` global stands for: its dtype."""

    _DTYPES = dict(
        FloatStorage=torch.float32, DoubleStorage=torch.float64,
        HalfStorage=torch.float16, BFloat16Storage=torch.bfloat16,
        LongStorage=torch.int64, IntStorage=torch.int32,
        ShortStorage=torch.int16, CharStorage=torch.int8,
        ByteStorage=torch.uint8, BoolStorage=torch.bool,
        ComplexFloatStorage=torch.complex64,
        ComplexDoubleStorage=torch.complex128, UntypedStorage=torch.uint8)

    def __init__(self, name: str):
        if name not in self._DTYPES:
            raise TorchScriptError(f'unknown storage type torch.{name}')
        self.dtype = self._DTYPES[name]


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False,
                    backward_hooks=None, metadata=None):
    if not isinstance(storage, torch.Tensor):
        raise TorchScriptError(f'a tensor without a storage record: '
                               f'{storage!r}')
    return storage.as_strided(tuple(size), tuple(stride), int(offset))


def _rebuild_parameter(data, requires_grad, backward_hooks, *args):
    return data


class _WeightsUnpickler(pickle.Unpickler):

    _FUNCTIONS = {
        ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
        ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
        ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
        ('collections', 'OrderedDict'): OrderedDict,
    }

    def __init__(self, data: bytes, zf: zipfile.ZipFile, prefix: str,
                 path: str):
        super().__init__(io.BytesIO(data))
        self._zf, self._prefix, self._path = zf, prefix, path
        self._storages: Dict[str, torch.Tensor] = {}
        self._classes: Dict[str, type] = {}

    def find_class(self, module, name):
        if module == '__torch__' or module.startswith('__torch__.'):
            qualname = f'{module}.{name}'
            if qualname not in self._classes:
                self._classes[qualname] = type(
                    name, (_ScriptObject, ), dict(_qualname=qualname))
            return self._classes[qualname]
        if module == 'torch' and name.endswith('Storage'):
            return _StorageType(name)  # an inert marker, not callable
        func = self._FUNCTIONS.get((module, name))
        if func is None:
            raise TorchScriptError(
                f'{self._path}: its data.pkl references {module}.{name}, '
                'which reading weights never needs')
        return func

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5
                and pid[0] == 'storage'):
            raise TorchScriptError(
                f'{self._path}: unexpected persistent id {pid!r}')
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise TorchScriptError(
                f'{self._path}: unexpected storage type {storage_type!r}')
        dtype = storage_type.dtype
        if key not in self._storages:
            raw = self._zf.read(f'{self._prefix}data/{key}')
            itemsize = torch.empty(0, dtype=dtype).element_size()
            if len(raw) < int(numel) * itemsize:
                raise TorchScriptError(
                    f'{self._path}: record data/{key} holds {len(raw)} '
                    f'bytes, {int(numel) * itemsize} expected')
            flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
            self._storages[key] = flat[:int(numel) * itemsize].view(dtype)
        return self._storages[key]


def _collect(obj, prefix: str, out: dict, seen: set, path: str) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    state = obj._state
    if state is None:
        return
    if not isinstance(state, dict):
        raise TorchScriptError(
            f'{path}: the scripted class {obj._qualname} stores its state '
            f'through its own __setstate__ ({type(state).__name__}), which '
            'only running its code could interpret')
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ScriptObject):
            _collect(value, f'{prefix}{name}.', out, seen, path)


def read_torchscript_weights(path) -> 'OrderedDict[str, torch.Tensor]':
    """The tensors of a TorchScript module archive, as a state dict
    (parameters, buffers and tensor attributes by their dotted names).

    Raises :class:`TorchScriptError` when the archive holds anything that
    reading weights does not need, or a scripted class with a custom
    ``__setstate__`` (its state is not a plain attribute dict).
    """
    path = str(path)
    with zipfile.ZipFile(path) as zf:
        prefix = _archive_prefix(zf.namelist())
        if prefix is None:
            raise TorchScriptError(f'{path}: no data.pkl in the archive')
        byteorder = prefix + 'byteorder'
        if byteorder in zf.namelist() and \
                zf.read(byteorder).strip() not in (b'little', b''):
            raise TorchScriptError(
                f'{path}: big-endian archives are not supported')
        root = _WeightsUnpickler(zf.read(prefix + 'data.pkl'), zf, prefix,
                                 path).load()
    if not isinstance(root, _ScriptObject):
        raise TorchScriptError(
            f'{path}: data.pkl holds {type(root).__name__}, not a scripted '
            'module')
    state = OrderedDict()
    _collect(root, '', state, set(), path)
    if not state:
        raise TorchScriptError(f'{path}: the archive holds no tensors')
    return state
