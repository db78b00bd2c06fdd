"""Report part of ``bootstrap_study.py``: two sections of
``docs/mini_study.md`` (blocks ``bootstrap`` and ``transfer``) and their
figure, from the cached runs. The reading of each table is hand-written in
``docs/mini_study/{bootstrap,transfer}_findings.md`` and included as is."""
import json
import os
import os.path as osp
import statistics
import warnings

import demo_study
from bootstrap_study import BASELINE, ROWS, TOTAL_EPOCHS
from bootstrap_transfer import SETTINGS

DOCS = osp.join(demo_study.REPO, 'docs')
FIG_DIR = osp.join(DOCS, 'mini_study')
FLAT = 1.0  # points: one standard error of a 2,000-query kNN near 70 %
CMD = 'python tools/reproduce/bootstrap_study.py'


def _load(root):
    out = []
    if osp.isdir(root):
        for d in sorted(os.listdir(root)):
            f = osp.join(root, d, 'result.json')
            if osp.isfile(f):
                with open(f) as fh:
                    out.append(json.load(fh))
    return out


def _ms(xs):
    """'mean ± sample std' (or the value alone for one seed)."""
    if len(xs) == 1:
        return f'{xs[0]:.1f}'
    return f'{statistics.fmean(xs):.1f} ± {statistics.stdev(xs):.1f}'


def _delta(xs):
    """Mean paired difference ± its standard error, and the verdict: more
    than twice the standard error away from 0, or within noise."""
    if not xs:
        return 'n/a', 'n/a'
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return f'{m:+.1f} (1 seed)', 'one seed: not resolved'
    se = statistics.stdev(xs) / len(xs)**.5
    verdict = ('within noise' if abs(m) <= 2 * se else
               'higher' if m > 0 else 'lower')
    return f'{m:+.1f} ± {se:.1f}', verdict


def _paired(runs, row, base, key):
    by_seed = {r['seed']: r[key] for r in runs if r['row'] == base}
    return [r[key] - by_seed[r['seed']] for r in runs
            if r['row'] == row and r['seed'] in by_seed]


def _stage_checks(r):
    """Per stage: kNN at its end, its change over the stage's last epoch,
    and its lowest value inside the stage."""
    at = {int(e): v for e, v in r['monitor']}
    out = []
    for a, b in zip(r['stages'], r['stages'][1:]):
        inside = [at[e] for e in range(a + 1, b + 1) if e in at]
        every_epoch = len(inside) == b - a  # not only at the stage end
        out.append(dict(end=at.get(b),
                        last=at[b] - at[b - 1] if every_epoch else None,
                        low=min(inside) if every_epoch else None))
    return out


def _recipe(r):
    """The demo recipe of a row, without its stage split."""
    text = demo_study._recipe_text(r)
    return ', '.join(p for p in text.split(', ') if not p.endswith(' ep'))


def _fmt_list(xs, fmt='{:.1f}'):
    return ' / '.join('–' if x is None else fmt.format(x) for x in xs)


def _curve_plot(runs, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for row, (label, _, epochs) in ROWS.items():
        rs = [r for r in runs if r['row'] == row]
        if not rs:
            continue
        xs = sorted({int(e) for r in rs for e, _ in r['monitor']})
        ys = np.array([[dict((int(e), v) for e, v in r['monitor']).get(x,
                                                                     np.nan)
                        for x in xs] for r in rs])
        with np.errstate(all='ignore'), warnings.catch_warnings():
            warnings.simplefilter('ignore', RuntimeWarning)  # 1-seed epochs
            m = np.nanmean(ys, 0)
            s = np.nanstd(ys, 0, ddof=1)
        every = [r for r in rs if not r.get('source')]
        seeds = (f'{len(rs)} seeds' if len(every) == len(rs) else
                 f'{len(rs)} seeds at stage ends, {len(every)} per epoch')
        line, = ax.plot(xs, m, marker='o', ms=3,
                        label=f'{label} ({" + ".join(map(str, epochs))} ep, '
                        f'{seeds})')
        if len(rs) > 1:
            ax.fill_between(xs, m - s, m + s, color=line.get_color(),
                            alpha=.15)
        for b in rs[0]['stages'][1:-1]:
            ax.axvline(b, color=line.get_color(), ls=':', lw=1)
    ax.set_xlabel('epoch (78 steps each)')
    ax.set_ylabel('kNN top-1 (%), monitor')
    ax.set_title('Fashion-MNIST kNN during pretraining: mean ± std over seeds;'
                 '\ndotted: stage boundaries', fontsize=10)
    ax.grid(alpha=.3)
    ax.legend(fontsize=8, loc='lower right')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _findings(name):
    f = osp.join(FIG_DIR, f'{name}_findings.md')
    if osp.isfile(f):
        with open(f) as fh:
            return ['', fh.read().rstrip('\n')]
    return []


def pretrain_section(work_dir):
    runs = _load(osp.join(work_dir, 'pretrain'))
    train = [r for r in runs if r['row'] != 'random_init']
    if not train:
        return None
    r0 = json.loads(train[0]['key'])
    seeds = sorted({r['seed'] for r in train})
    lines = [
        '## Bootstrapping at equal budget',
        '',
        f'Generated by `{CMD} report` from `{CMD} pretrain` '
        f'({demo_study._machine()}; one torch thread per run, two runs at a '
        'time). '
        f'Every row trains the demo\'s encoder ({_recipe(r0)}) for '
        f'{TOTAL_EPOCHS} epochs in total, split into '
        'stages; each stage restarts warmup + cosine, and dBOT\'s teacher '
        'becomes the previous stage\'s student while the student is '
        're-initialised. Seeds '
        f'{", ".join(map(str, seeds))}; seed `s` of every row starts from '
        'the same random student. kNN (k = 20, T = 0.07) and linear probe '
        '(L-BFGS logistic regression on standardised features): mean patch '
        'token of the final encoder, 10,000 training images against the '
        '2,000 test images. "monitor": the demo\'s `KNNMonitorHook` '
        '(2,000-image bank, 2,000 queries), every epoch.',
        '',
        '| row | epochs per stage | kNN | linear | monitor: init / end of '
        'each stage | monitor: change over each stage\'s last epoch | '
        'monitor: lowest inside each stage | min/run |',
        '|---|---|---|---|---|---|---|---|',
    ]
    inits = [r for r in runs if r['row'] == 'random_init']
    if inits:
        lines.append(f'| random init (the untrained student) | – | '
                     f'{_ms([r["knn"] for r in inits])} | '
                     f'{_ms([r["linear"] for r in inits])} | – | – | – | – |')
    flat_all, unmeasured = True, []
    for row, (label, _, epochs) in ROWS.items():
        rs = [r for r in train if r['row'] == row]
        if not rs:
            continue
        checks = [_stage_checks(r) for r in rs]
        n = len(epochs)

        def col(k, i):
            vals = [c[i][k] for c in checks if c[i][k] is not None]
            return statistics.fmean(vals) if vals else None
        ends = [statistics.fmean(r['monitor'][0][1] for r in rs)] + [
            col('end', i) for i in range(n)]
        last = [col('last', i) for i in range(n)]
        worst = [max((abs(c[i]['last']) for c in checks
                      if c[i]['last'] is not None), default=None)
                 for i in range(n)]
        flat_all &= all(w is None or w <= FLAT for w in worst)
        unmeasured += [f'{label} seed {r["seed"]}' for r in rs
                       if r.get('source')]
        lines.append(
            f'| {label} | {" + ".join(map(str, epochs))} | '
            f'{_ms([r["knn"] for r in rs])} | '
            f'{_ms([r["linear"] for r in rs])} | {_fmt_list(ends)} | '
            f'{_fmt_list(last, "{:+.1f}")} (largest in a seed: '
            f'{_fmt_list(worst, "±{:.1f}")}) | '
            f'{_fmt_list([col("low", i) for i in range(n)])} | '
            f'{statistics.fmean(r["train_seconds"] for r in rs) / 60:.1f} |')
    lines += [
        '',
        f'A stage counts as ended on its plateau when the monitor changed by '
        f'at most {FLAT:g} point (about one standard error of a 2,000-query '
        'kNN near 70 %) over its last epoch, in every seed: '
        + ('**true for every stage of every row**' if flat_all else
           '**not true for every stage** (see the largest changes above)')
        + ('.' if not unmeasured else
           ' where it was measured. Not measured for '
           + ', '.join(unmeasured) + ': these are the runs of the shipped '
           'demo by `demo_study.py seeds` (same recipe and seeds), scored '
           'from their checkpoints; their monitor ran at the stage ends only, '
           'and their minutes are from a machine shared with more runs.'),
        '',
        '![kNN during pretraining](mini_study/bootstrap_knn.png)',
        '',
        f'### Paired by seed, against "{ROWS[BASELINE][0]}" '
        '(the same budget in one stage)',
        '',
        '"higher" / "lower": the mean difference is more than twice its '
        'standard error over seeds; otherwise "within noise".',
        '',
        '| row | Δ kNN | Δ linear | verdict (kNN) | verdict (linear) |',
        '|---|---|---|---|---|',
    ]
    allruns = train + [dict(r, row='random_init') for r in inits]
    for row in ['random_init'] + list(ROWS):
        if row == BASELINE:
            continue
        dk, vk = _delta(_paired(allruns, row, BASELINE, 'knn'))
        dl, vl = _delta(_paired(allruns, row, BASELINE, 'linear'))
        if dk == 'n/a':
            continue
        label = ('random init' if row == 'random_init' else ROWS[row][0])
        lines.append(f'| {label} | {dk} | {dl} | {vk} | {vl} |')
    _curve_plot(train, osp.join(FIG_DIR, 'bootstrap_knn.png'))
    return '\n'.join(lines + _findings('bootstrap'))


def transfer_section(work_dir):
    runs = _load_transfer(osp.join(work_dir, 'transfer'))
    if not runs:
        return None
    enc = sorted({r['encoder'] for r in runs if r['encoder'] != 'random_init'})
    label = ', '.join(ROWS[e][0] for e in enc)
    lines = [
        '## Transfer to the mosaic tasks',
        '',
        f'Generated by `{CMD} report` from `{CMD} transfer` '
        f'({demo_study._machine()}; one torch thread per run). The pretrained '
        f'encoder is the {TOTAL_EPOCHS}-epoch **{label}** of the study above '
        '(seed `s`), against the same ViT at its random initialisation (fine-'
        'tuning seed `s`). Cascade Mask R-CNN (mmdet `CocoMetric`) and UperNet '
        '(mmseg `IoUMetric`) from `configs/reproduce/`, shrunk to the 128 x 4 '
        'encoder: 64 px scenes of 1-3 real Fashion-MNIST items, 200 val '
        'scenes; det 4 epochs of 75 steps, seg 400 steps, batch 8, AdamW, '
        'layer decay 0.75 (det) / 0.65 (seg), unless the setting says '
        'otherwise. Δ: pretrained minus random init, paired by seed, ± its '
        'standard error; "higher" / "lower" when more than twice that.',
        '',
        '| setting | what changes | seeds | det bbox mAP: pretrained / '
        'random | Δ bbox mAP | det verdict | seg mIoU: pretrained / random | '
        'Δ mIoU | seg verdict |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for name, (what, _) in SETTINGS.items():
        cells, seeds = [], set()
        for task, metric in (('det', 'coco/bbox_mAP'), ('seg', 'mIoU')):
            rs = [r for r in runs if r['setting'] == name
                  and r['task'] == task]
            pre = {r['seed']: r[metric] for r in rs
                   if r['encoder'] != 'random_init'}
            ran = {r['seed']: r[metric] for r in rs
                   if r['encoder'] == 'random_init'}
            both = sorted(set(pre) & set(ran))
            seeds |= set(both)
            if not both:
                cells += ['–', '–', '–']
                continue
            d, v = _delta([pre[s] - ran[s] for s in both])
            cells += [f'{_ms([pre[s] for s in both])} / '
                      f'{_ms([ran[s] for s in both])}', d, v]
        if not seeds:
            continue
        lines.append(f'| {name} | {what} | {len(seeds)} | ' +
                     ' | '.join(cells) + ' |')
    return '\n'.join(lines + _findings('transfer'))


def _load_transfer(root):
    out = []
    if osp.isdir(root):
        for setting in sorted(os.listdir(root)):
            out += _load(osp.join(root, setting))
    return out


def write(work_dir):
    report = osp.join(DOCS, 'mini_study.md')
    for name, section in (('bootstrap', pretrain_section),
                          ('transfer', transfer_section)):
        body = section(work_dir)
        if body:
            demo_study.splice_block(report, name, body)
            print(f'[bootstrap_study] {report}: section {name} written')
