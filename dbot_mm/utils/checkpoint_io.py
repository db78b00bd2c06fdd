"""Crash-safe checkpoint files for week-long runs.

mmengine writes a local checkpoint with ``open(path, 'wb')``: a job killed
mid-write leaves a truncated file, and when the name already existed (a
re-run epoch, ``latest.pth``) the good copy is gone. ``--resume auto`` then
trusts ``last_checkpoint`` blindly. Here local writes go to a temporary file
in the same directory and are renamed into place atomically, and
auto-resume skips any checkpoint that is not a complete archive, falling
back to the newest complete one. :mod:`dbot_mm.compat` installs both into
mmengine.
"""
import logging
import os
import os.path as osp
import re
import tempfile
import zipfile
from typing import Optional

from mmengine.logging import print_log


def atomic_write_bytes(data: bytes, filepath: str) -> None:
    """Write, fsync, then rename: readers see the old file or the new one."""
    dirname = osp.dirname(osp.abspath(filepath))
    os.makedirs(dirname, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=dirname, prefix=f'.{osp.basename(filepath)}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def is_complete_checkpoint(path: str) -> bool:
    """True for a readable torch zip archive (every member's CRC checks).

    Reading the archive costs one sequential pass over the file, paid once
    per auto-resume, and catches truncation and torn writes alike.
    """
    if not osp.isfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


_CKPT_NUM = re.compile(r'^(?:epoch|iter)_(\d+)\.pth$')


_TMP_NAME = re.compile(r'^\..+\.pth\..+\.tmp$')


def remove_stale_temp_files(work_dir: str) -> list:
    """Delete the temporary files of writes that a crash interrupted.

    A process killed inside :func:`atomic_write_bytes` leaves its
    ``.<name>.pth.<random>.tmp`` behind (the checkpoint it was replacing is
    intact). Called on resume, from rank 0 only, when no writer is active.
    """
    removed = []
    if not osp.isdir(work_dir):
        return removed
    for name in os.listdir(work_dir):
        if _TMP_NAME.match(name):
            try:
                os.remove(osp.join(work_dir, name))
                removed.append(name)
            except OSError:
                pass
    if removed:
        print_log(f'Removed {len(removed)} temporary file(s) of interrupted '
                  f'checkpoint writes: {", ".join(sorted(removed))}',
                  logger='current', level=logging.WARNING)
    return removed


def _in_work_dir(last: str, work_dir: str) -> str:
    """``last_checkpoint`` holds an absolute path. In a work dir that was
    copied or moved, it names the *old* folder's file: resuming from it
    would silently continue another run. Use the file of the same name in
    this work dir instead (missing: the numbered files decide)."""
    if not osp.isabs(last):
        return osp.join(work_dir, last)
    here = osp.realpath(work_dir)
    if osp.realpath(osp.dirname(last)) == here:
        return last
    local = osp.join(work_dir, osp.basename(last))
    print_log(
        f'last_checkpoint in {work_dir} points to {last}, outside this work '
        f'dir (copied or moved?); using {local} instead.',
        logger='current', level=logging.WARNING)
    return local


def find_latest_valid_checkpoint(work_dir: str) -> Optional[str]:
    """``last_checkpoint`` if complete, else the newest complete one."""
    from mmengine.dist import get_rank
    if get_rank() == 0:
        remove_stale_temp_files(work_dir)
    pointer = osp.join(work_dir, 'last_checkpoint')
    candidates = []
    if osp.exists(pointer):
        with open(pointer) as f:
            last = f.read().strip()
        if last:
            candidates.append(_in_work_dir(last, work_dir))
    if osp.isdir(work_dir):
        numbered = []
        for name in os.listdir(work_dir):
            m = _CKPT_NUM.match(name)
            if m:
                numbered.append((int(m.group(1)), osp.join(work_dir, name)))
        candidates += [p for _, p in sorted(numbered, reverse=True)]
    for path in candidates:
        if is_complete_checkpoint(path):
            if candidates and path != candidates[0]:
                print_log(
                    f'Skipped incomplete checkpoint {candidates[0]}; '
                    f'resuming from {path}', logger='current',
                    level=logging.WARNING)
            return path
        print_log(f'Checkpoint {path} is incomplete or unreadable; not '
                  'used for auto-resume', logger='current',
                  level=logging.WARNING)
    if not candidates:
        print_log('Did not find last_checkpoint to be resumed.',
                  logger='current')
    return None
