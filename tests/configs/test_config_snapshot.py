"""Every shipped config parses to the values stored in config_snapshot.json.

The snapshot guards refactors of the config files (shared base files, helper
functions, inheritance): they may change how a value is written, never the
value. Each config under ``configs/`` (``_base_`` excluded) is parsed with
``Config.fromfile`` and flattened to sorted ``key.path = repr(value)`` lines:

- dict keys are joined with ``.``, list items are written ``[i]`` and tuple
  items ``(i)``, so a list that turns into a tuple shows up;
- list order is kept as written: no list is canonicalised (the order of
  ``custom_hooks`` decides the call order of hooks of equal priority, that
  of pipelines and schedulers is the order they run in);
- only dict key order is ignored (lines are sorted), as mmengine builds
  nothing from it;
- functions and modules (helpers defined or imported in a config) and the
  ``filename`` key are dropped; the repository root in a value becomes
  ``<root>`` and the ``DBOT_*`` path variables are unset while parsing, so
  the lines do not depend on the machine.

After an intended change of a config value, regenerate the file and review
its diff::

    python tests/configs/test_config_snapshot.py --update
"""
import json
import os
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).with_name('config_snapshot.json')
GROUPS = ('pretrain', 'cls', 'det', 'seg', 'reproduce')
ENV_VARS = ('DBOT_TEACHER', 'DBOT_PRETRAINED', 'DBOT_FINETUNED')
DROPPED_KEYS = {'filename'}


def shipped_configs():
    return sorted(
        str(p.relative_to(ROOT)) for group in GROUPS
        for p in (ROOT / 'configs' / group).rglob('*.py')
        if '_base_' not in p.parts)


def _flatten(value, path, lines):
    if isinstance(value, (types.FunctionType, types.ModuleType, type)):
        return
    if isinstance(value, dict):
        if not value:
            lines.append(f'{path} = {{}}')
        for key, item in value.items():
            if key in DROPPED_KEYS:
                continue
            _flatten(item, f'{path}.{key}' if path else str(key), lines)
    elif isinstance(value, (list, tuple)):
        if not value:
            lines.append(f'{path} = {value!r}')
        left, right = ('[', ']') if isinstance(value, list) else ('(', ')')
        for i, item in enumerate(value):
            _flatten(item, f'{path}{left}{i}{right}', lines)
    else:
        lines.append(f'{path} = ' + repr(value).replace(str(ROOT), '<root>'))


def flatten_config(rel):
    """Sorted ``key.path = repr(value)`` lines of the config at ``rel``."""
    from mmengine.config import Config
    saved = {k: os.environ.pop(k) for k in ENV_VARS if k in os.environ}
    try:
        cfg = Config.fromfile(str(ROOT / rel))
    finally:
        os.environ.update(saved)
    lines = []
    _flatten(cfg.to_dict(), '', lines)
    return sorted(lines)


def _load_snapshot():
    return json.loads(SNAPSHOT.read_text())


def test_snapshot_lists_every_shipped_config():
    assert sorted(_load_snapshot()) == shipped_configs()


@pytest.mark.parametrize('rel', shipped_configs())
def test_config_matches_snapshot(rel):
    if rel.startswith('configs/det/'):
        pytest.importorskip('mmdet')
    if rel.startswith('configs/seg/'):
        pytest.importorskip('mmseg')
    expected = _load_snapshot()[rel]
    actual = flatten_config(rel)
    if actual != expected:
        gone = sorted(set(expected) - set(actual))
        new = sorted(set(actual) - set(expected))
        pytest.fail(f'{rel} parses to other values than the snapshot\n'
                    f'  only in the snapshot: {gone[:20]}\n'
                    f'  only now: {new[:20]}')


if __name__ == '__main__':
    if sys.argv[1:] != ['--update']:
        sys.exit(f'usage: {sys.argv[0]} --update')
    snapshot = {rel: flatten_config(rel) for rel in shipped_configs()}
    SNAPSHOT.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + '\n')
    print(f'{SNAPSHOT}: {len(snapshot)} configs')
