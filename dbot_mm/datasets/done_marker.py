"""The marker a finished conversion leaves in its output folder: the
arguments it ran with and the counts it wrote, so that a rerun with the
same arguments returns at once and one with other arguments starts clean."""
import json
import os
import os.path as osp
import shutil
from typing import Callable, Dict, Optional, Sequence


def load_marker(out_dir: str, name: str) -> Optional[dict]:
    try:
        with open(osp.join(out_dir, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_marker(out_dir: str, name: str, args: dict,
                 counts: Dict[str, int]) -> None:
    """Written last and atomically: a marker means a finished run."""
    tmp = osp.join(out_dir, name + '.tmp')
    with open(tmp, 'w') as f:
        json.dump(dict(args=args, counts=counts), f, indent=2)
    os.replace(tmp, osp.join(out_dir, name))


def reuse_or_clear(out_dir: str, name: str, args: dict, force: bool,
                   is_complete: Callable[[str, dict], bool],
                   subdirs: Sequence[str] = ()) -> Optional[Dict[str, int]]:
    """The counts of an earlier run with the same ``args`` whose files are
    all there (unless ``force``). Otherwise None, after removing an earlier
    run's marker and ``subdirs``, so that no stale file stays behind next
    to the new ones."""
    marker = load_marker(out_dir, name)
    if (not force and marker is not None and marker.get('args') == args
            and is_complete(out_dir, marker)):
        return dict(marker['counts'])
    if marker is not None:
        os.remove(osp.join(out_dir, name))
        for sub in subdirs:
            shutil.rmtree(osp.join(out_dir, sub), ignore_errors=True)
    return None
