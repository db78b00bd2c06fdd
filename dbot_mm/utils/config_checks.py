"""Config checks that turn bad input into one message naming the key/file.

Without them a missing data root surfaces as mmengine's ``FileNotFoundError``
about an annotation file deep in a traceback, an empty annotation file as
``need at least one array to concatenate``, a data set smaller than one
batch as a run that "finishes" without a single iteration, and a det/seg
config pointing at the wrong checkpoint only after the model is built.
:func:`check_config` runs before the Runner is built (``tools/train.py``,
``tools/test.py``); :func:`check_train_dataloader` checks the built train
dataloader before anything else is built from it.
"""
import os.path as osp
from typing import Iterator, List, Optional, Tuple


__all__ = [
    'ConfigCheckError', 'check_config', 'check_dataset_paths',
    'check_pretrained_checkpoints', 'check_stage_hooks',
    'check_train_dataloader'
]

_LOADERS = {
    'train': ('train_dataloader', ),
    'val': ('val_dataloader', ),
    'test': ('test_dataloader', ),
}


class ConfigCheckError(ValueError):
    """A config names a missing / empty / inconsistent input."""


def _is_remote(path) -> bool:
    return isinstance(path, str) and '://' in path


def _datasets(cfg, key: str) -> Iterator[Tuple[str, dict]]:
    """``(key path, dataset cfg)`` of a dataset cfg and the ones it wraps."""
    if not isinstance(cfg, dict):
        return
    yield key, cfg
    inner = cfg.get('dataset')
    if isinstance(inner, dict):
        yield from _datasets(inner, f'{key}.dataset')
    inners = cfg.get('datasets')
    if isinstance(inners, (list, tuple)):
        for i, d in enumerate(inners):
            yield from _datasets(d, f'{key}.datasets[{i}]')


def _has_a_line(path: str) -> bool:
    with open(path, 'rb') as f:
        for line in f:
            if line.strip():
                return True
    return False


def check_dataset_paths(cfg, modes=('train', )) -> None:
    """Data root, annotation file and image folder of each dataloader."""
    for mode in modes:
        for loader_key in _LOADERS[mode]:
            loader = cfg.get(loader_key)
            if not isinstance(loader, dict):
                continue
            for key, ds in _datasets(loader.get('dataset'),
                                     f'{loader_key}.dataset'):
                if ds.get('backend_args') or ds.get('lazy_init'):
                    continue
                root = ds.get('data_root') or ''
                if _is_remote(root):
                    continue
                if root and not osp.isdir(root):
                    raise ConfigCheckError(
                        f'{key}.data_root: directory not found: {root} '
                        f'(relative to {osp.abspath(".")}). Create the data '
                        'set (docs/datasets.md) or override it with '
                        f'--cfg-options {key}.data_root=PATH')
                ann = ds.get('ann_file') or ''
                if isinstance(ann, str) and ann and not _is_remote(ann):
                    path = ann if osp.isabs(ann) else osp.join(root, ann)
                    if not osp.isfile(path):
                        raise ConfigCheckError(
                            f'{key}.ann_file: file not found: {path}')
                    if path.endswith('.txt') and not _has_a_line(path):
                        raise ConfigCheckError(
                            f'{key}.ann_file: {path} is empty; the data set '
                            'has no samples.')
                prefix = ds.get('data_prefix')
                prefixes = (prefix.items() if isinstance(prefix, dict) else
                            [('', prefix)] if isinstance(prefix, str) else [])
                for sub, value in prefixes:
                    if not value or not isinstance(value, str) or \
                            _is_remote(value):
                        continue
                    path = value if osp.isabs(value) else osp.join(
                        root, value)
                    if not osp.isdir(path):
                        name = f'{key}.data_prefix' + (f'.{sub}'
                                                       if sub else '')
                        raise ConfigCheckError(
                            f'{name}: directory not found: {path}')


def _walk(node, key: str) -> Iterator[Tuple[str, dict]]:
    if isinstance(node, dict):
        yield key, node
        for k, v in node.items():
            yield from _walk(v, f'{key}.{k}')
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _walk(v, f'{key}[{i}]')


def _checkpoint_keys(path: str) -> Optional[List[str]]:
    """Tensor names of a checkpoint without reading the tensors (mmap),
    through the same allow-list as every load; None when unreadable here
    (the real loader then reports)."""
    import torch
    from .safe_load import allowed_globals
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            ckpt = torch.load(path, map_location='cpu', weights_only=True,
                              mmap=True)
    except Exception:  # noqa: BLE001  (unsafe / old format: loader reports)
        return None
    state = ckpt
    for k in ('state_dict', 'model'):
        if isinstance(state, dict) and isinstance(state.get(k), dict):
            state = state[k]
            break
    return list(state) if isinstance(state, dict) else None


def check_pretrained_checkpoints(cfg) -> None:
    """Every local ``Pretrained`` / ``PretrainedTeacher`` checkpoint of
    ``cfg.model`` exists, and holds keys under the configured prefix."""
    model = cfg.get('model')
    if model is None:
        return
    for key, node in _walk(model, 'model'):
        kind = node.get('type')
        ckpt = node.get('checkpoint')
        if kind not in ('Pretrained', 'PretrainedTeacher') or \
                not isinstance(ckpt, str) or _is_remote(ckpt):
            continue
        path = osp.expanduser(ckpt)
        if not osp.isfile(path):
            raise ConfigCheckError(
                f'{key}.checkpoint: file not found: {ckpt}')
        prefix = node.get('prefix',
                          'backbone.' if kind == 'PretrainedTeacher' else None)
        if not prefix:
            continue
        keys = _checkpoint_keys(path)
        if keys is None:
            continue
        dotted = prefix if prefix.endswith('.') else prefix + '.'
        if not any(k.startswith(dotted) for k in keys):
            heads = sorted({k.split('.')[0] + '.' for k in keys})[:8]
            raise ConfigCheckError(
                f'{key}: {ckpt} has no weights under prefix "{dotted}" '
                f'(its top-level prefixes: {heads}). A dbot_mm pretraining '
                'checkpoint keeps the encoder under "backbone."; set '
                f'{key}.prefix or point {key}.checkpoint at another file.')


def check_stage_hooks(cfg) -> None:
    """``StageBootstrapHook.stages`` ends at ``train_cfg.max_epochs``
    (checked here before anything is built, and again by the hook)."""
    max_epochs = (cfg.get('train_cfg') or {}).get('max_epochs')
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        if not isinstance(hook, dict) or \
                hook.get('type') != 'StageBootstrapHook':
            continue
        from dbot_mm.engine.schedules import check_stages
        stages = check_stages(hook.get('stages', (0, 800, 1600)),
                              key=f'custom_hooks[{i}].stages')
        depths = hook.get('teacher_depths')
        if depths is not None and len(depths) != len(stages) - 1:
            raise ConfigCheckError(
                f'custom_hooks[{i}].teacher_depths needs one entry per '
                f'stage: stages {stages} has {len(stages) - 1} stages, got '
                f'{list(depths)}')
        if max_epochs is not None and stages[-1] != max_epochs:
            raise ConfigCheckError(
                f'custom_hooks[{i}].stages must end at train_cfg.max_epochs '
                f'({max_epochs}); got {stages}')


def check_config(cfg, modes=('train', )) -> None:
    """All the checks above; raises :class:`ConfigCheckError`."""
    check_dataset_paths(cfg, modes)
    if 'train' in modes:  # test runs load `load_from`, not init_cfg
        check_pretrained_checkpoints(cfg)
        check_stage_hooks(cfg)


def check_train_dataloader(runner) -> None:
    """Build ``runner``'s train loop now and refuse a dataloader that yields
    no iteration.

    mmengine would otherwise fail on an iteration-based scheduler with
    ``epoch_length must be a positive integer, but got 0``, or, without
    one, run every epoch with zero iterations, write checkpoints and report
    success. ``Runner.train`` reuses the loop built here.
    """
    if not hasattr(runner, '_train_loop') or runner._train_loop is None:
        return
    loop = runner.build_train_loop(runner._train_loop)
    runner._train_loop = loop
    loader = loop.dataloader
    dataset = loader.dataset
    size = len(dataset)
    if size == 0:
        raise ConfigCheckError(
            f'train_dataloader.dataset is empty: {_describe(dataset)} gives '
            'no samples.')
    if len(loader) == 0:
        from mmengine.dist import get_world_size
        raise ConfigCheckError(
            f'train_dataloader gives no iteration: {size} samples '
            f'({_describe(dataset)}) over {get_world_size()} process(es) is '
            f'less than batch_size={loader.batch_size} with drop_last=True.')


def _describe(dataset) -> str:
    parts = [type(dataset).__name__]
    for attr in ('data_root', 'ann_file'):
        value = getattr(dataset, attr, None)
        if value:
            parts.append(f'{attr}={value}')
    return ' '.join(parts)
