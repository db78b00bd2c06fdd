"""kNN accuracy of the student encoder while it pretrains.

The pretraining loss says little about how good the representation is, and
dBOT's loss jumps at every stage boundary by design; a kNN classifier on
frozen features (as in DINO) is a cheap, label-using check that the
bootstrapped stages improve the encoder.
"""
import inspect
from typing import List, Optional, Sequence, Set, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dist import (all_gather_object, broadcast_object_list,
                           get_world_size)
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS
from torch.utils.data import DataLoader


def knn_scores(train_feats: torch.Tensor,
               train_labels: torch.Tensor,
               val_feats: torch.Tensor,
               k: int = 20,
               T: float = 0.07,
               num_classes: Optional[int] = None,
               chunk_size: int = 1024) -> torch.Tensor:
    """Per-class vote of DINO's weighted kNN, shape (N_val, num_classes).

    Each of the ``k`` most cosine-similar train samples votes for its label
    with weight ``exp(sim / T)``.  Features are L2-normalised here, so raw
    features may be passed.  Val rows are processed in chunks to bound the
    (chunk, N_train) similarity matrix.
    """
    train_labels = train_labels.long().to(train_feats.device)
    if num_classes is None:
        num_classes = int(train_labels.max()) + 1
    train = F.normalize(train_feats.float(), dim=1)
    val = F.normalize(val_feats.float().to(train.device), dim=1)
    k = min(k, train.shape[0])
    scores = []
    for chunk in val.split(chunk_size):
        sim, idx = (chunk @ train.T).topk(k, dim=1)
        votes = torch.zeros(chunk.shape[0], num_classes, device=train.device)
        scores.append(votes.scatter_add_(1, train_labels[idx],
                                         (sim / T).exp()))
    if not scores:
        return torch.zeros(0, num_classes, device=train.device)
    return torch.cat(scores)


def knn_classify(train_feats: torch.Tensor,
                 train_labels: torch.Tensor,
                 val_feats: torch.Tensor,
                 k: int = 20,
                 T: float = 0.07,
                 num_classes: Optional[int] = None) -> torch.Tensor:
    """Predicted label of every val feature (see :func:`knn_scores`)."""
    return knn_scores(train_feats, train_labels, val_feats, k, T,
                      num_classes).argmax(dim=1)


def _parse_boundaries(stages) -> Optional[List[int]]:
    """Epoch numbers out of a list of ints, or of dicts / objects with
    begin / end keys; None when the list has no such shape."""
    values = []
    for s in stages:
        if isinstance(s, (int, np.integer)) and not isinstance(s, bool):
            values.append(int(s))
            continue
        found = False
        for key in ('begin', 'start', 'end', 'epoch', 'boundary'):
            v = s.get(key) if isinstance(s, dict) else getattr(s, key, None)
            if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
                values.append(int(v))
                found = True
        if not found:
            return None
    return values


@HOOKS.register_module()
class KNNMonitorHook(Hook):
    """Log DINO-style kNN top-1 of the student encoder during pretraining.

    Runs every ``interval`` epochs (iterations with ``by_epoch=False``) and
    at the end of every stage.  The stage boundaries come from ``stages``
    or, when None, from any hook in ``runner.hooks`` with a ``stages``
    attribute (``StageBootstrapHook``): cumulative epochs such as
    ``[0, 800, 1600]``; every boundary > 0 and the last epoch count as a
    stage end.  The priority is ABOVE_NORMAL so that it measures the student
    before any NORMAL hook of the same epoch touches it; StageBootstrapHook
    re-initialises the student only in the next ``before_train_epoch``.

    Images go through the model's own ``data_preprocessor`` and then
    ``model.backbone`` in eval mode without masking.  The result (percent)
    is written to the message hub as ``knn/top1`` (``knn/<name>/top1`` for
    a named monitor: several can watch one run, e.g. on a second dataset
    the model never trains on), the log and the visualizer.

    With ``eval_at_start`` the randomly initialised student is scored before
    the first step, and every later line states its change against that
    starting point: a feature-distillation run can spend its first epochs
    below its own random init, which the loss never shows.  The start value
    and the history (``<prefix>/start_top1``, ``<prefix>/history``) are
    runtime info of the message hub, so they survive ``--resume``.

    Under DDP every rank embeds its shard; the shards are gathered so that
    all ranks see the same number.

    A side measurement never costs the run: an error while scoring (an
    unreadable image, out of memory) is logged as one ERROR line and
    training goes on, so the checkpoint written at the same epoch end is
    never lost; non-finite features log a warning instead of an accuracy.
    Its data paths are checked with the rest of the config before the first
    step (``dbot_mm.utils.config_checks``).

    Args:
        train_dataloader (dict | DataLoader): Labelled memory bank, e.g. a
            ``CustomDataset`` with a test-style pipeline ending in
            ``PackInputs``.  A dict without ``sampler`` gets
            ``DefaultSampler(shuffle=False)``.
        val_dataloader (dict | DataLoader): Labelled queries.
        interval (int): Period in epochs (or iterations); 0 or less: only
            at stage ends.
        stages (Sequence[int], optional): Stage boundaries, overriding the
            ones found on a StageBootstrapHook (which are only looked up
            with ``by_epoch=True``).
        k (int): Neighbours. Defaults to 20.
        temperature (float): Vote temperature. Defaults to 0.07.
        feat (str): 'mean' of the patch tokens or the 'cls' token.
        num_classes (int, optional): Defaults to the length of the train
            set's ``metainfo['classes']``, else the largest label + 1.
        backbone_kwargs (dict, optional): Extra forward arguments.  None
            passes ``mask=None`` to a backbone whose forward has a ``mask``
            argument (mmpretrain's ``MAEViT`` treats ``mask=False`` as
            masked), nothing otherwise.
        by_epoch (bool): Count ``interval`` and ``stages`` in epochs.
        eval_at_start (bool): Also score the student before the first
            training step (fresh runs only). Defaults to False.
        name (str): Tells several monitors apart in keys and log lines;
            '' (default) keeps the plain ``knn/...`` keys.
        centre (bool): Subtract the bank's mean feature from bank and
            queries before the cosine kNN.  A direction shared by all
            images then no longer dominates the similarities; comparing
            the two variants tells such a shared component from a loss of
            information.  Defaults to False (DINO's protocol).
        cache_data (bool): Keep the loaded batches (before the data
            preprocessor) in memory after the first evaluation instead of
            decoding the images again every time; for small sets such as
            the demo's. Defaults to False.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self,
                 train_dataloader: Union[dict, DataLoader],
                 val_dataloader: Union[dict, DataLoader],
                 interval: int = 1,
                 stages: Optional[Sequence[int]] = None,
                 k: int = 20,
                 temperature: float = 0.07,
                 feat: str = 'mean',
                 num_classes: Optional[int] = None,
                 backbone_kwargs: Optional[dict] = None,
                 by_epoch: bool = True,
                 eval_at_start: bool = False,
                 name: str = '',
                 centre: bool = False,
                 cache_data: bool = False):
        if feat not in ('mean', 'cls'):
            raise ValueError(f"feat must be 'mean' or 'cls', got {feat!r}")
        self._loader_cfgs = dict(train=train_dataloader, val=val_dataloader)
        self._loaders = {}
        self.interval = interval
        self.stages = None if stages is None else list(stages)
        self.k = k
        self.temperature = temperature
        self.feat = feat
        self.num_classes = num_classes
        self.backbone_kwargs = backbone_kwargs
        self.by_epoch = by_epoch
        self.eval_at_start = eval_at_start
        self.name = name
        self.centre = centre
        self.cache_data = cache_data
        self._cache = {}
        self.prefix = f'knn/{name}' if name else 'knn'
        self._stage_ends: Optional[Set[int]] = None
        self._staged = False  # stage boundaries known: label stage ends

    # ---- when -----------------------------------------------------------
    def _find_stage_ends(self, runner) -> Set[int]:
        stages, source = self.stages, 'KNNMonitorHook.stages'
        if stages is None and self.by_epoch:  # hooks count stages in epochs
            for hook in getattr(runner, 'hooks', []):
                # every mmengine Hook has a class attribute ``stages`` (its
                # method names); only an override is a boundary list.
                found = getattr(hook, 'stages', Hook.stages)
                if hook is not self and found is not Hook.stages:
                    stages, source = found, type(hook).__name__
                    break
        last = runner.max_epochs if self.by_epoch else runner.max_iters
        ends = {last}
        if stages is not None:
            values = _parse_boundaries(stages)
            if values is None:
                runner.logger.warning(
                    f'KNNMonitorHook: cannot read stage boundaries from '
                    f'{source} ({stages!r}); monitoring every '
                    f'{self.interval} and at the end only.')
            else:
                ends |= {v for v in values if 0 < v <= last}
                self._staged = len(ends) > 1
        return ends

    def _due(self, runner, done: int) -> bool:
        if self._stage_ends is None:
            self._stage_ends = self._find_stage_ends(runner)
        return ((self.interval > 0 and done % self.interval == 0)
                or done in self._stage_ends)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        # After weight init, resume and every hook's before_train checks;
        # iteration 0 happens only in a fresh run.
        if self.eval_at_start and runner.iter == 0:
            self._evaluate_or_log(runner, step=0)

    def after_train_epoch(self, runner) -> None:
        if self.by_epoch and self._due(runner, runner.epoch + 1):
            self._evaluate_or_log(runner, step=runner.epoch + 1)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if not self.by_epoch and self._due(runner, runner.iter + 1):
            self._evaluate_or_log(runner, step=runner.iter + 1)

    def _evaluate_or_log(self, runner, step: int) -> Optional[float]:
        """A failing monitor must not cost the run: it runs before the
        epoch's checkpoint is written, so an error here is logged (one
        line) and training goes on; the checkpoint is saved as usual and
        the monitor tries again when it is next due."""
        try:
            return self.evaluate(runner, step)
        except Exception as e:  # noqa: BLE001  (a side measurement)
            unit = 'epoch' if self.by_epoch else 'iter'
            first = (str(e).strip().splitlines() or [''])[0]
            runner.logger.error(
                f'kNN monitor ({unit} {step}) failed, no {self.prefix}/top1 '
                f'logged: {type(e).__name__}: {first}. Training continues '
                'and the checkpoint of this epoch is written as usual.')
            return None

    # ---- what -----------------------------------------------------------
    def _loader(self, runner, split: str) -> DataLoader:
        if split not in self._loaders:
            cfg = self._loader_cfgs[split]
            if isinstance(cfg, dict):
                cfg = dict(cfg)  # build_dataloader deep-copies it
                cfg.setdefault('sampler',
                               dict(type='DefaultSampler', shuffle=False))
                cfg = runner.build_dataloader(cfg, seed=runner.seed)
            self._loaders[split] = cfg
        return self._loaders[split]

    def _forward_kwargs(self, backbone) -> dict:
        if self.backbone_kwargs is not None:
            return dict(self.backbone_kwargs)
        try:
            params = inspect.signature(backbone.forward).parameters
        except (TypeError, ValueError):
            return {}
        return dict(mask=None) if 'mask' in params else {}

    def _pool(self, out, backbone) -> torch.Tensor:
        """One vector per image from the usual backbone output shapes."""
        if isinstance(out, (tuple, list)):
            out = out[-1]  # last of out_indices
        if out.dim() == 2:  # already pooled (cls_token / avg_featmap)
            return out
        if out.dim() == 4:  # (B, C, H, W) feature map
            if self.feat == 'cls':
                raise ValueError("feat='cls' needs token output (B, N, C), "
                                 'the backbone returns a feature map')
            return out.mean(dim=(2, 3))
        if out.dim() == 3:  # (B, N, C) tokens
            extra = getattr(backbone, 'num_extra_tokens', 1)
            if self.feat == 'cls':
                if extra < 1:
                    raise ValueError("feat='cls' but the backbone has no "
                                     'cls token')
                return out[:, 0]
            return out[:, extra:].mean(dim=1)
        raise ValueError(f'Unexpected backbone output shape {out.shape}')

    def _batches(self, loader):
        """The loader's batches; with ``cache_data`` read once and kept."""
        if not self.cache_data:
            return loader
        key = id(loader)
        if key not in self._cache:
            self._cache[key] = list(loader)
        return self._cache[key]

    @torch.no_grad()
    def _embed(self, model, loader):
        backbone = model.backbone
        kwargs = self._forward_kwargs(backbone)
        param = next(backbone.parameters(), None)
        feats, labels = [], []
        for data in self._batches(loader):
            data = model.data_preprocessor(data, False)
            x = data['inputs']
            if isinstance(x, (list, tuple)):
                # SelfSupDataPreprocessor: a list of views (keep the first)
                # or, after pseudo_collate, a list of single images.
                x = x[0] if x[0].dim() == 4 else torch.stack(list(x))
            if param is not None:
                x = x.to(param.dtype)
            f = self._pool(backbone(x, **kwargs), backbone)
            feats.extend(f.float().cpu().numpy())
            labels.extend(
                int(torch.as_tensor(s.gt_label).reshape(-1)[0])
                for s in data['data_samples'])
        return feats, labels

    @staticmethod
    def _gather(rows: list, size: int) -> list:
        """Undo DefaultSampler's rank-strided split and drop its padding."""
        if get_world_size() == 1:
            return rows
        parts = all_gather_object(rows)
        ordered = [p[i] for i in range(max(map(len, parts))) for p in parts
                   if i < len(p)]
        return ordered[:size]

    def evaluate(self, runner, step: int) -> Optional[float]:
        """Embed both splits, run kNN, log and return top-1 (percent);
        None (nothing logged as an accuracy) when the student's features
        are not finite."""
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        backbone = model.backbone
        was_training = backbone.training
        backbone.eval()
        try:
            data = {}
            for split in ('train', 'val'):
                loader = self._loader(runner, split)
                feats, labels = self._embed(model, loader)
                rows = self._gather(list(zip(feats, labels)),
                                    len(loader.dataset))
                feats = torch.from_numpy(np.stack([r[0] for r in rows]))
                data[split] = (feats, torch.tensor([r[1] for r in rows]))
        finally:
            backbone.train(was_training)
        # identical on every rank after the gather, so all ranks agree
        if not all(bool(torch.isfinite(f).all()) for f, _ in data.values()):
            unit = 'epoch' if self.by_epoch else 'iter'
            runner.logger.warning(
                f'kNN monitor ({unit} {step}): the student\'s features are '
                'not finite (NaN/Inf weights?); no accuracy logged.')
            return None

        num_classes = self.num_classes
        if num_classes is None:
            classes = getattr(self._loader(runner, 'train').dataset,
                              'metainfo', {}).get('classes')
            num_classes = len(classes) if classes else int(
                max(data['train'][1].max(), data['val'][1].max())) + 1
        param = next(backbone.parameters(), None)
        device = param.device if param is not None else 'cpu'
        bank, queries = data['train'][0], data['val'][0]
        if self.centre:
            mean = bank.mean(0, keepdim=True)
            bank, queries = bank - mean, queries - mean
        pred = knn_classify(bank.to(device), data['train'][1],
                            queries.to(device), self.k,
                            self.temperature, num_classes).cpu()
        top1 = [float((pred == data['val'][1]).float().mean() * 100)]
        broadcast_object_list(top1, src=0)  # identical on every rank
        top1 = top1[0]

        hub, key = runner.message_hub, self.prefix
        hub.update_scalar(f'{key}/top1', top1)
        runner.visualizer.add_scalars({f'{key}/top1': top1}, step=step)
        history = [list(h) for h in hub.get_info(f'{key}/history', [])
                   if h[0] != step] + [[step, top1]]
        hub.update_info(f'{key}/history', history)
        if step == 0:
            hub.update_info(f'{key}/start_top1', top1)
        start = hub.get_info(f'{key}/start_top1')
        unit = 'epoch' if self.by_epoch else 'iter'
        where = f'{unit} {step}'
        if step == 0:
            where = 'random init, before the first step'
        elif self._staged and step in self._stage_ends:
            ends = sorted(self._stage_ends)
            where += f', end of stage {ends.index(step) + 1}/{len(ends)}'
        change = ''
        if start is not None and step != 0:
            change = f' ({top1 - start:+.2f} vs. {start:.2f} at random init)'
        runner.logger.info(
            f'kNN monitor ({where}): {key}/top1 {top1:.2f}{change} '
            f'(k={self.k}, T={self.temperature}, feat={self.feat}, '
            f'{len(data["train"][1])} train / {len(data["val"][1])} val)')
        return top1

    def after_run(self, runner) -> None:
        history = runner.message_hub.get_info(f'{self.prefix}/history', [])
        if len(history) < 2:
            return
        unit = 'epoch' if self.by_epoch else 'iter'
        start = runner.message_hub.get_info(f'{self.prefix}/start_top1')
        parts = []
        for step, top1 in history:
            if step == 0:
                parts.append(f'random init {top1:.2f}')
            elif start is None:
                parts.append(f'{unit} {step} {top1:.2f}')
            else:
                parts.append(f'{unit} {step} {top1:.2f} ({top1 - start:+.2f})')
        runner.logger.info(f'kNN monitor summary ({self.prefix}/top1): ' +
                           ' | '.join(parts))
