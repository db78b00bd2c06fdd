"""The output steps the analyses share: CSV tables and figures."""
import csv
import os
import os.path as osp
from typing import Iterable, Optional, Sequence


def write_csv(path: str, header: Sequence[str],
              rows: Iterable[Sequence]) -> str:
    """``header`` and ``rows`` to ``path`` (folders made as needed);
    returns ``path``."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed);
    imported on first use so that the analyses run without matplotlib."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, ax, path: str, title: Optional[str] = None) -> str:
    """Grid, title, legend and layout of ``ax``, then ``fig`` to ``path``
    (folders made as needed) and closed; returns ``path``."""
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc='best')
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=130)
    pyplot().close(fig)
    return path
