"""SIGKILL at any point of a dBOT run, then `tools/train.py --resume`: the
resumed run ends bit-identical to an uninterrupted one.

Each run is a real `tools/train.py` process on a 3-stage tiny DBOT
(16 px, 12 images, random crop + flip, 3 iterations per epoch, 6 epochs,
stage boundaries at epochs 2 and 4, a checkpoint every epoch). The process
kills itself with SIGKILL (no handler, no cleanup, as the OOM killer or a
preempted node does) through `reliability_plugins.FaultInjectionHook`.
After `--resume` (auto) the final checkpoint's model, optimizer and
scheduler states and every logged loss equal the uninterrupted run's.
"""
import os
import os.path as osp
import random
import signal

import pytest

from rel_helpers import (assert_same_tree, load_ckpt, make_image_folder,
                         read_losses, run_train, start_train, wait,
                         write_config)

ITERS_PER_EPOCH, EPOCHS = 3, 6
TOTAL = ITERS_PER_EPOCH * EPOCHS


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Data, config, and the uninterrupted reference run (started at once,
    waited for by :func:`reference`)."""
    base = tmp_path_factory.mktemp('kill_resume')
    data = make_image_folder(str(base / 'data'))
    cfg = write_config(str(base / 'cfg.py'), data)
    proc = start_train(cfg, str(base / 'reference'))
    state = dict(base=base, cfg=cfg, proc=proc, done=None)
    yield state
    if state['done'] is None:
        proc.kill()
        proc.wait()


def reference(setup):
    if setup['done'] is None:
        rc, log = wait(setup['proc'])
        assert rc == 0, log[-3000:]
        setup['done'] = log
    return osp.join(setup['base'], 'reference')


def assert_resumes_identically(setup, name, fault_env, expect_last):
    """Kill with ``fault_env``, check the state the crash left, resume
    (auto) and compare everything with the reference run."""
    work = osp.join(setup['base'], name)
    rc, log = run_train(setup['cfg'], work, env=fault_env)
    assert rc == -signal.SIGKILL, log[-3000:]
    assert not osp.exists(osp.join(work, f'epoch_{EPOCHS}.pth'))
    done = sorted(int(n[6:-4]) for n in os.listdir(work)
                  if n.startswith('epoch_') and n.endswith('.pth'))
    assert (done[-1] if done else 0) == expect_last, done

    rc, log = run_train(setup['cfg'], work, '--resume')
    assert rc == 0, log[-3000:]
    if expect_last:
        assert f'Load checkpoint from {work}/epoch_{expect_last}.pth' \
            in log, log[-3000:]
        assert f'resumed epoch: {expect_last}' in log, log[-3000:]
    assert not [n for n in os.listdir(work) if n.endswith('.tmp')]

    ref = reference(setup)
    final, ref_final = (load_ckpt(osp.join(d, f'epoch_{EPOCHS}.pth'))
                        for d in (work, ref))
    for key in ('state_dict', 'optimizer', 'param_schedulers'):
        assert_same_tree(final[key], ref_final[key], key)
    assert int(final['state_dict']['stage']) == 2
    assert final['meta']['iter'] == ref_final['meta']['iter'] == TOTAL
    # every loss logged before the kill and after the resume is the
    # reference's, bit for bit (iterations of the interrupted epoch twice)
    ref_losses = {r['iter']: r for r in read_losses(ref)}
    losses = read_losses(work)
    assert {r['iter'] for r in losses} == set(range(TOTAL))
    for r in losses:
        assert r == ref_losses[r['iter']], r
    return log


def test_sigkill_inside_boundary_checkpoint_write(setup):
    """Killed while writing epoch_2.pth, the checkpoint at the end of stage
    1 (bytes fsynced into the temporary file, not yet renamed): epoch_2.pth
    never appears, last_checkpoint still names epoch_1.pth, resume trains
    epoch 2 again, crosses the boundary once and ends identical. The
    temporary file is removed on resume."""
    work = osp.join(setup['base'], 'in_save')
    log = assert_resumes_identically(
        setup, 'in_save', dict(DBOT_MM_TEST_KILL_IN_SAVE='epoch_2.pth'),
        expect_last=1)
    assert 'Removed 1 temporary file(s) of interrupted checkpoint writes: ' \
        '.epoch_2.pth.' in log
    assert log.count('dBOT stage 2/3 begins at epoch 2') == 1
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))


def _random_iter(seed):
    return random.Random(seed).randrange(1, TOTAL)


@pytest.mark.slow
@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_sigkill_at_random_iteration(setup, seed):
    it = _random_iter(seed)
    assert_resumes_identically(
        setup, f'random{seed}', dict(DBOT_MM_TEST_KILL_AT_ITER=it),
        expect_last=it // ITERS_PER_EPOCH)


@pytest.mark.slow
@pytest.mark.parametrize('it', [6, 7, 12])
def test_sigkill_inside_stage_boundary_epoch(setup, it):
    """Killed in the first epoch of stage 2 (iteration 6: right after the
    bootstrap, before its first step; 7: mid-epoch) or of stage 3 (12).
    The checkpoint before holds stage k-1; the resumed run bootstraps once
    more and matches."""
    log = assert_resumes_identically(
        setup, f'boundary{it}', dict(DBOT_MM_TEST_KILL_AT_ITER=it),
        expect_last=it // ITERS_PER_EPOCH)
    epoch = it // ITERS_PER_EPOCH
    assert f'begins at epoch {epoch}' in log


@pytest.mark.slow
def test_sigkill_after_step_before_checkpoint(setup):
    """Killed after the last optimizer step of epoch 4 (iteration 11 of
    0..17), before epoch_4.pth is written: that epoch is trained again."""
    assert_resumes_identically(
        setup, 'after_step', dict(DBOT_MM_TEST_KILL_AFTER_STEP=11),
        expect_last=3)


@pytest.mark.slow
def test_sigkill_while_rewriting_last_checkpoint_pointer(setup):
    """Killed after epoch_3.pth is complete, while `last_checkpoint` is
    rewritten (left empty): auto-resume falls back to the newest complete
    numbered checkpoint, epoch_3.pth."""
    work = osp.join(setup['base'], 'pointer')
    assert_resumes_identically(
        setup, 'pointer', dict(DBOT_MM_TEST_KILL_IN_POINTER='epoch_3.pth'),
        expect_last=3)
    assert open(osp.join(work, 'last_checkpoint')).read().strip().endswith(
        f'epoch_{EPOCHS}.pth')


@pytest.mark.slow
def test_two_kills_in_a_row(setup):
    """Killed, resumed, killed again (inside the next boundary write),
    resumed: still identical."""
    work = osp.join(setup['base'], 'twice')
    rc, log = run_train(setup['cfg'], work,
                        env=dict(DBOT_MM_TEST_KILL_AT_ITER=5))
    assert rc == -signal.SIGKILL
    rc, log = run_train(setup['cfg'], work, '--resume',
                        env=dict(DBOT_MM_TEST_KILL_IN_SAVE='epoch_4.pth'))
    assert rc == -signal.SIGKILL
    rc, log = run_train(setup['cfg'], work, '--resume')
    assert rc == 0, log[-3000:]
    assert 'resumed epoch: 3' in log
    ref = reference(setup)
    for key in ('state_dict', 'optimizer'):
        assert_same_tree(
            load_ckpt(osp.join(work, f'epoch_{EPOCHS}.pth'))[key],
            load_ckpt(osp.join(ref, f'epoch_{EPOCHS}.pth'))[key], key)
