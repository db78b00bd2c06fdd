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
import difflib
import math
import os
import os.path as osp
import tempfile
from functools import reduce
from typing import Iterator, List, Optional, Tuple


__all__ = [
    'ConfigCheckError', 'check_checkpoint_fits', 'check_config',
    'check_data_preprocessor', 'check_dataset_paths', 'check_optimizer',
    'check_pretrained_checkpoints', 'check_stage_hooks',
    'check_train_dataloader', 'check_work_dir', 'describe_build_error'
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


def _loaders(cfg, modes) -> Iterator[Tuple[str, dict]]:
    """``(key, dataloader cfg)`` of the run's loaders and, for training,
    those of custom hooks (e.g. ``KNNMonitorHook.train_dataloader``), whose
    data is otherwise first read at the end of a stage."""
    for mode in modes:
        for loader_key in _LOADERS[mode]:
            loader = cfg.get(loader_key)
            if isinstance(loader, dict):
                yield loader_key, loader
    if 'train' in modes:
        for i, hook in enumerate(cfg.get('custom_hooks') or []):
            if not isinstance(hook, dict):
                continue
            for name, value in hook.items():
                if name.endswith('dataloader') and isinstance(value, dict):
                    yield f'custom_hooks[{i}].{name}', value


def _datasets_of(cfg, modes) -> Iterator[Tuple[str, dict]]:
    for loader_key, loader in _loaders(cfg, modes):
        for key, ds in _datasets(loader.get('dataset'),
                                 f'{loader_key}.dataset'):
            if not ds.get('backend_args') and not ds.get('lazy_init'):
                yield key, ds


def _has_a_file(path: str) -> bool:
    """Stops at the first file: cheap even on an ImageNet folder."""
    for _, _, files in os.walk(path, followlinks=True):
        if files:
            return True
    return False


_LABELLED = ('CustomDataset', 'ImageNet', 'ImageNet21k')


def _check_labels(key: str, path: str) -> None:
    """mmpretrain's ``CustomDataset`` reads ``<image> <integer label>`` per
    line and fails on ``int()`` without naming the file or the line."""
    with open(path, 'rb') as f:
        for number, raw in enumerate(f, 1):
            line = raw.decode('utf-8', 'replace').strip()
            if not line:
                continue
            parts = line.rsplit(' ', 1)
            label = parts[1] if len(parts) == 2 else ''
            try:
                int(label)
            except ValueError:
                raise ConfigCheckError(
                    f'{key}: {path} line {number}: {line[:80]!r} has '
                    f'{"label " + repr(label) if label else "no label"}; '
                    'expected "<image path> <integer label>" per line (or '
                    'with_label=False).') from None


def check_dataset_paths(cfg, modes=('train', )) -> None:
    """Data root, annotation file and image folder of each dataloader (and
    of the dataloaders custom hooks build later)."""
    entries = list(_datasets_of(cfg, modes))
    for key, ds in entries:
        root = ds.get('data_root') or ''
        if _is_remote(root):
            continue
        if root and not osp.isdir(root):
            others = [k for k, d in entries if k != key and
                      (d.get('data_root') or '') == root]
            also = (f'; the same path is also set in '
                    f'{", ".join(o + ".data_root" for o in others)}'
                    if others else '')
            raise ConfigCheckError(
                f'{key}.data_root: directory not found: {root} '
                f'(relative to {osp.abspath(".")}). Create the data '
                'set (docs/datasets.md) or override it with '
                f'--cfg-options {key}.data_root=PATH{also}')
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
            if path.endswith('.txt') and ds.get('type') in _LABELLED and \
                    ds.get('with_label', True):
                _check_labels(f'{key}.ann_file', path)
        prefix = ds.get('data_prefix')
        prefixes = (prefix.items() if isinstance(prefix, dict) else
                    [('', prefix)] if isinstance(prefix, str) else [])
        for sub, value in prefixes:
            if not value or not isinstance(value, str) or \
                    _is_remote(value):
                continue
            path = value if osp.isabs(value) else osp.join(root, value)
            name = f'{key}.data_prefix' + (f'.{sub}' if sub else '')
            if not osp.isdir(path):
                raise ConfigCheckError(
                    f'{name}: directory not found: {path}')
            if not ann and ds.get('type') in _LABELLED and \
                    not _has_a_file(path):
                raise ConfigCheckError(
                    f'{name}: {path} holds no files; the data set has no '
                    'samples.')


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
    """The stage list of ``StageBootstrapHook`` is the one source of truth:
    ``train_cfg.max_epochs``, the LR schedulers (a restart at every
    boundary, none crossing one), the stage list of any ``KNNMonitorHook``
    and the checkpoint interval must agree with it. A command-line override
    of one of them alone (``--cfg-options``) is refused here, before
    anything is built; the hook checks its own arguments again."""
    from dbot_mm.engine.schedules import check_stages
    max_epochs = (cfg.get('train_cfg') or {}).get('max_epochs')
    hooks = cfg.get('custom_hooks') or []
    for i, hook in enumerate(hooks):
        if not isinstance(hook, dict) or \
                hook.get('type') != 'StageBootstrapHook':
            continue
        key = f'custom_hooks[{i}].stages'
        try:
            stages = check_stages(hook.get('stages', (0, 800, 1600)), key=key)
        except ValueError as e:
            raise ConfigCheckError(str(e)) from None
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
        _check_schedulers_follow(cfg, stages, key)
        for j, other in enumerate(hooks):
            if isinstance(other, dict) and \
                    other.get('type') == 'KNNMonitorHook' and \
                    other.get('stages') is not None and \
                    list(other['stages']) != stages:
                raise ConfigCheckError(
                    f'custom_hooks[{j}].stages {list(other["stages"])} '
                    f'differs from {key} {stages}: the kNN monitor would '
                    'score other epochs than the stage ends. Drop it (the '
                    'monitor then reads the StageBootstrapHook\'s) or set '
                    'both alike.')
        _check_checkpoint_interval(cfg, stages, key)


_STAGE_HINT = ('The pretrain configs derive param_scheduler '
               'and the stage hook (stage_recipe(stages, ...)), '
               'max_epochs and the checkpoint interval from one `stages` '
               'list: change it in a config file, not one of them with '
               '--cfg-options.')


def _check_schedulers_follow(cfg, stages: List[int], key: str) -> None:
    """Every stage restarts the LR the same way: the LR schedulers that
    begin in stage k are those of stage 1 shifted by its start, none
    crosses a boundary or starts after the last epoch, and they reach it.
    (A stage list shortened with --cfg-options alone leaves a schedule
    whose stage 2 starts with stage 1's cosine at the peak LR.)"""
    scheds = cfg.get('param_scheduler') or []
    if isinstance(scheds, dict):
        scheds = [scheds]
    spans = []
    for s in scheds:
        if not isinstance(s, dict) or 'LR' not in str(s.get('type', '')) \
                or not s.get('by_epoch', True):
            continue  # iteration-based: not comparable with epochs here
        spans.append((s.get('begin', 0), s.get('end', stages[-1]),
                      str(s.get('type'))))
    if not spans:
        return
    spans.sort()
    last = stages[-1]
    shown = ', '.join(f'{t} [{b}, {e})' for b, e, t in spans)

    def refuse(why):
        raise ConfigCheckError(
            f'param_scheduler does not follow {key} {stages}: {why} '
            f'(schedulers: {shown}). {_STAGE_HINT}')

    beyond = [(b, e) for b, e, _ in spans if b >= last]
    if beyond:
        refuse(f'a scheduler starts at epoch {beyond[0][0]}, after the last '
               f'stage ends (train_cfg.max_epochs {last})')
    for boundary in stages[1:-1]:
        crossing = [(b, e) for b, e, _ in spans
                    if b < boundary < min(e, last)]
        if crossing:
            refuse(f'the scheduler over epochs [{crossing[0][0]}, '
                   f'{crossing[0][1]}) runs across the stage boundary at '
                   f'epoch {boundary}')
    first = None
    for k, (start, end) in enumerate(zip(stages[:-1], stages[1:])):
        pattern = [(t, b - start) for b, _, t in spans if start <= b < end]
        if not pattern or pattern[0][1] != 0:
            refuse(f'no LR scheduler restarts at the start of stage {k + 1} '
                   f'(epoch {start})')
        if first is None:
            first = pattern
        elif pattern != first:
            refuse(f'stage {k + 1} (from epoch {start}) does not restart '
                   f'the LR like stage 1: {pattern} vs {first} (type, '
                   'epochs after the stage start)')
    reach = max(min(e, last) for _, e, _ in spans)
    if reach < last:
        refuse(f'the LR schedulers end at epoch {reach}, the last stage at '
               f'{last}')


def _check_checkpoint_interval(cfg, stages: List[int], key: str) -> None:
    """Each stage gets a checkpoint: the interval is at most the shortest
    stage, unless only the final checkpoint is wanted (interval >= the
    last epoch)."""
    ckpt = (cfg.get('default_hooks') or {}).get('checkpoint')
    if not isinstance(ckpt, dict) or not ckpt.get('by_epoch', True):
        return
    interval = ckpt.get('interval', -1)
    if not isinstance(interval, int) or interval <= 0 or \
            interval >= stages[-1]:
        return
    lengths = [b - a for a, b in zip(stages[:-1], stages[1:])]
    shortest = min(lengths)
    if interval > shortest:
        k = lengths.index(shortest)
        every_end = reduce(math.gcd, stages[1:])
        raise ConfigCheckError(
            f'default_hooks.checkpoint.interval={interval} is longer than '
            f'stage {k + 1} [{stages[k]}, {stages[k + 1]}) of {key} '
            f'{stages}: that stage would end without a checkpoint. Set '
            f'--cfg-options default_hooks.checkpoint.interval={every_end} '
            '(a checkpoint at every stage end).')


def check_optimizer(cfg) -> None:
    """Learning rate and weight decay are non-negative numbers (torch
    refuses them only once the optimizer is built, deep in a traceback)."""
    wrapper = cfg.get('optim_wrapper')
    if not isinstance(wrapper, dict):
        return
    optimizers = [('optim_wrapper.optimizer', wrapper.get('optimizer'))]
    optimizers += [(f'optim_wrapper.{k}.optimizer', v.get('optimizer'))
                   for k, v in wrapper.items() if isinstance(v, dict)]
    for key, opt in optimizers:
        if not isinstance(opt, dict):
            continue
        for name in ('lr', 'weight_decay'):
            value = opt.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or \
                    not isinstance(value, (int, float)) or \
                    not value >= 0 or value != value:
                raise ConfigCheckError(
                    f'{key}.{name}: must be a non-negative number, got '
                    f'{value!r}')


def check_data_preprocessor(cfg) -> None:
    """A zero ``std`` turns every input into NaN/Inf."""
    model = cfg.get('model') if isinstance(cfg.get('model'), dict) else {}
    for key, pre in (('model.data_preprocessor',
                      model.get('data_preprocessor')),
                     ('data_preprocessor', cfg.get('data_preprocessor'))):
        if not isinstance(pre, dict):
            continue
        std = pre.get('std')
        if isinstance(std, (list, tuple)) and any(
                isinstance(v, (int, float)) and not v > 0 for v in std):
            raise ConfigCheckError(
                f'{key}.std: {list(std)} has a value that is not positive; '
                'normalising by it gives NaN/Inf inputs.')


def check_work_dir(cfg) -> None:
    """The work dir is (or can be created as) a writable directory."""
    work_dir = cfg.get('work_dir')
    if not isinstance(work_dir, str) or _is_remote(work_dir):
        return
    path = osp.abspath(osp.expanduser(work_dir))
    existing = path
    while not osp.exists(existing):
        parent = osp.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not osp.isdir(existing):
        what = 'is a file' if existing == path else \
            f'cannot be created: {existing} is a file'
        raise ConfigCheckError(
            f'work_dir: {work_dir} {what}, not a directory; pass another '
            '--work-dir.')
    try:
        fd, tmp = tempfile.mkstemp(dir=existing, prefix='.dbot_mm_write_')
        os.close(fd)
        os.remove(tmp)
    except OSError as e:
        where = '' if existing == path else f' (in {existing})'
        raise ConfigCheckError(
            f'work_dir: {work_dir} is not writable{where}: '
            f'{e.strerror or e}; pass another --work-dir.') from None


def check_config(cfg, modes=('train', )) -> None:
    """All the checks above; raises :class:`ConfigCheckError`."""
    check_dataset_paths(cfg, modes)
    check_data_preprocessor(cfg)
    if 'train' in modes:  # test runs load `load_from`, not init_cfg
        check_pretrained_checkpoints(cfg)
        check_stage_hooks(cfg)
        check_optimizer(cfg)
        check_work_dir(cfg)


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


def check_checkpoint_fits(model, path: str, key: str = '--resume',
                          checkpoint=None) -> None:
    """Refuse a checkpoint whose tensors do not fit ``model``.

    mmengine loads such a file with ``strict=False``: ~100 size-mismatch
    warnings, then training starts from random weights (``load_from``) or,
    on ``--resume``, the optimizer state of another shape crashes the first
    step (a segfault in the fused AdamW kernel). ``checkpoint``: the file
    already loaded; else it is read through the safe loader (memory-mapped),
    so an unsafe or broken file is refused here too, with one message.
    """
    from mmengine.model import is_model_wrapper

    from .safe_load import safe_load
    ckpt = checkpoint if checkpoint is not None else safe_load(
        path, map_location='cpu', mmap=True)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    if not isinstance(state, dict):
        return
    state = {(k[len('module.'):] if k.startswith('module.') else k): v
             for k, v in state.items()}
    if is_model_wrapper(model):
        model = model.module
    own = model.state_dict()
    differ = [k for k, v in state.items() if k in own and hasattr(v, 'shape')
              and tuple(v.shape) != tuple(own[k].shape)]
    shared = [k for k in state if k in own]
    hint = ('Was it written by another config (width, depth, patch size)? '
            'To load part of a checkpoint into another architecture use '
            "init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...).")
    if differ:
        k = differ[0]
        raise ConfigCheckError(
            f'{key}: {path} does not fit the model: {len(differ)} of its '
            f'{len(state)} tensors have another shape, e.g. "{k}" is '
            f'{tuple(state[k].shape)} in the file and '
            f'{tuple(own[k].shape)} in the model. {hint}')
    if state and not shared:
        heads = sorted({k.split('.')[0] + '.' for k in state})[:8]
        raise ConfigCheckError(
            f'{key}: {path} has no tensor of this model (its top-level '
            f'prefixes: {heads}). {hint}')
    if key != '--resume':
        return
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or 'iter' not in meta or \
            'optimizer' not in ckpt:
        raise ConfigCheckError(
            f'--resume: {path} is not a training checkpoint written by the '
            'Runner (no optimizer state or meta.iter); to start from its '
            f'weights use --cfg-options load_from={path} without --resume.')
    missing = [n for n, _ in model.named_parameters() if n not in state]
    if missing:
        raise ConfigCheckError(
            f'--resume: {path} lacks {len(missing)} parameters of the model, '
            f'e.g. "{missing[0]}" (another depth?). {hint}')


def _find_type(cfg, type_name: str) -> List[str]:
    """Key paths of the config dicts whose ``type`` is ``type_name``."""
    found = []
    for key, node in _walk(dict(cfg.items()), ''):
        t = node.get('type')
        if t == type_name or (isinstance(t, type) and
                              t.__name__ == type_name):
            found.append(key.lstrip('.'))
    return found


def _node_at(cfg, key: str) -> dict:
    for k, node in _walk(dict(cfg.items()), ''):
        if k.lstrip('.') == key:
            return node
    return {}


def _classes_being_built(error: BaseException) -> List[str]:
    names = []
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == 'build_from_cfg':
            node = frame.f_locals.get('cfg')
            kind = node.get('type') if isinstance(node, dict) else None
            if isinstance(kind, type):
                kind = kind.__name__
            if isinstance(kind, str):
                names.append(kind.split('.')[-1])
        tb = tb.tb_next
    return names


def describe_build_error(cfg, error: BaseException) -> str:
    """One line for an error raised while the Runner builds the model,
    data and optimizer from ``cfg``, naming the config key where it can.

    mmengine's builder reports ``class `X` in module: <error>``; an unknown
    type is a ``KeyError`` naming the registry. Both are mapped back to the
    config key here (``model.backbone.mask_ration``, ``model.neck.type``).
    """
    import re
    text = str(error.args[0]) if isinstance(error, KeyError) and \
        error.args else str(error)
    text = ' '.join(text.split())
    # the classes being built, outermost first: from mmengine's builder
    # frames in the traceback, and from the "class `X` in ...:" prefixes
    # some mmengine versions add to the message
    classes = _classes_being_built(error)
    classes += re.findall(r"class `(\w+)` in \S+?: ", text)
    message = re.sub(r"^(?:['\"]?class `\w+` in \S+?: )+", '', text)
    if len(message) > 1 and message[0] in '\'"' and message[-1] == \
            message[0]:
        message = message[1:-1]
    unknown = re.search(r"(\S+) is not in the (\S+) registry", message)
    if unknown:
        name, registry = unknown.group(1).strip('\'"`'), unknown.group(2)
        keys = _find_type(cfg, name)
        where = f'{keys[0]}.type: ' if keys else ''
        close = _close_registered(name, registry)
        return (f'{where}{name!r} is not a registered type (registry '
                f'{registry}){close}. Is it spelt right, and is the module '
                'that registers it in custom_imports?')
    for name in reversed(classes):  # the innermost class first
        keys = _find_type(cfg, name)
        if not keys:
            continue
        arg = re.search(r"unexpected keyword argument '(\w+)'", message)
        if arg:
            return (f'{keys[0]}.{arg.group(1)}: {name} has no argument '
                    f'{arg.group(1)!r} ({type(error).__name__}: {message})')
        node = _node_at(cfg, keys[0])
        named = [k for k in node if k != 'type' and
                 re.search(rf'(?<![\w.]){re.escape(k)}(?!\w)', message)]
        where = f'{keys[0]}.{named[0]}' if named else keys[0]
        return f'{where} ({name}): {type(error).__name__}: {message}'
    return f'{type(error).__name__}: {message}'


def _close_registered(name: str, registry: str) -> str:
    """`` (did you mean 'X'?)`` from the registry's names, if any is close."""
    try:
        import importlib
        scope, _, reg_name = registry.partition('::')
        mod = importlib.import_module(f'{scope}.registry')
        reg = getattr(mod, reg_name.upper() + 'S', None) or getattr(
            mod, reg_name.upper(), None)
        names = set(reg.module_dict) if reg is not None else set()
        if reg is not None and reg.parent is not None:
            names |= set(reg.parent.module_dict)
    except Exception:  # noqa: BLE001  (a hint only)
        return ''
    close = difflib.get_close_matches(name, sorted(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ''
