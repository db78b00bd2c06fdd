"""One picture of a staged pretraining run: loss and kNN against epochs.

dBOT's loss restarts at every stage boundary (a new teacher, a re-drawn
student), so the loss alone cannot say whether the run improved the encoder;
drawn next to the kNN accuracy of the student, with the boundaries marked
and the random-init kNN as a reference line, it can.
"""
import os.path as osp
from typing import List, Optional, Sequence

from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

from .knn_monitor_hook import _parse_boundaries


@HOOKS.register_module()
class CurvePlotHook(Hook):
    """Write ``<work_dir>/<filename>`` (PNG) at the end of training.

    The loss is mmengine's ``train/loss`` averaged over bins of
    ``interval`` iterations; the kNN
    points are the ``knn/history`` that :class:`KNNMonitorHook` keeps, its
    ``knn/start_top1`` a dotted line.  Stage boundaries come from ``stages``
    or, when None, from the hook that defines them (``StageBootstrapHook``),
    so they cannot disagree with the run.  Both histories live in the
    message hub's runtime info and survive ``--resume``.

    Args:
        filename (str): PNG name inside the work dir.
        interval (int): Iterations averaged into one loss point.
        stages (Sequence[int], optional): Stage boundaries in epochs.
        labels (dict, optional): Legend name of each kNN monitor by its key
            prefix (``'knn'``, ``'knn/<name>'``); default: the prefix.
    """

    priority = 'LOW'

    def __init__(self,
                 filename: str = 'curves.png',
                 interval: int = 10,
                 stages: Optional[Sequence[int]] = None,
                 labels: Optional[dict] = None):
        if interval < 1:
            raise ValueError(f'CurvePlotHook: interval must be >= 1, '
                             f'got {interval}')
        self.filename = filename
        self.interval = interval
        self.stages = None if stages is None else list(stages)
        self.labels = dict(labels or {})

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        # mmengine's RuntimeInfoHook (VERY_HIGH) has already put this
        # iteration's loss into the hub's `train/loss` buffer: average that.
        if (runner.iter + 1) % self.interval:
            return
        hub = runner.message_hub
        if 'train/loss' not in hub.log_scalars:
            return
        curve = hub.get_info('curves/loss')
        if curve is None:
            curve = []
            hub.update_info('curves/loss', curve)
        epoch = (runner.iter + 1) / max(len(runner.train_dataloader), 1)
        curve.append([epoch, hub.get_scalar('train/loss').mean(self.interval)])

    def _boundaries(self, runner) -> List[int]:
        stages = self.stages
        if stages is None:
            for hook in runner.hooks:
                found = getattr(hook, 'stages', Hook.stages)
                if hook is not self and found is not Hook.stages:
                    stages = found
                    break
        return _parse_boundaries(stages or []) or []

    @master_only
    def after_train(self, runner) -> None:
        path = osp.join(runner.work_dir, self.filename)
        info = runner.message_hub.runtime_info
        prefixes = sorted((key[:-len('/history')] for key in info
                           if key.startswith('knn')
                           and key.endswith('/history')),
                          key=lambda p: (p != 'knn', p))  # main one first
        knn = {self.labels.get(p, p): (info[p + '/history'],
                                       info.get(p + '/start_top1'))
               for p in prefixes}
        self.plot(info.get('curves/loss', []), knn,
                  self._boundaries(runner), path,
                  title=osp.basename(osp.normpath(runner.work_dir)))
        runner.logger.info(f'Loss and kNN curves written to {path}')

    @staticmethod
    def plot(loss, knn, boundaries, path, title=''):
        """Draw the two panels; usable on histories read from a checkpoint.

        ``knn`` maps a monitor's legend name to its
        ``(history, start_top1)``.
        """
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt

        fig, (ax_loss, ax_knn) = plt.subplots(
            2, 1, figsize=(7, 5.5), sharex=True)
        if loss:
            x, y = zip(*loss)
            ax_loss.plot(x, y, lw=1.2, color='tab:blue')
        ax_loss.set_ylabel('training loss')
        colours = iter(['tab:green', 'tab:purple', 'tab:orange', 'tab:cyan'])
        for label, (history, start) in knn.items():
            colour = next(colours, 'black')
            if history:
                x, y = zip(*history)
                ax_knn.plot(x, y, 'o-', color=colour, label=f'{label}: student')
                for xi, yi in history:
                    ax_knn.annotate(f'{yi:.1f}', (xi, yi), xytext=(0, 6),
                                    textcoords='offset points', ha='center',
                                    fontsize=8)
            if start is not None:
                ax_knn.axhline(start, ls=':', color=colour,
                               label=f'{label}: random init ({start:.1f})')
        ax_knn.set_ylabel('kNN top-1 (%)')
        ax_knn.set_xlabel('epoch')
        inner = [b for b in boundaries[1:-1]]
        for ax in (ax_loss, ax_knn):
            for b in inner:
                ax.axvline(b, ls='--', color='tab:red', lw=1)
            ax.grid(alpha=0.3)
        if inner:
            ax_loss.plot([], [], ls='--', color='tab:red',
                         label='stage boundary (teacher <- student)')
            ax_loss.legend(loc='upper right', fontsize=8)
        if knn:
            ax_knn.legend(loc='best', fontsize=8)
        if title:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
