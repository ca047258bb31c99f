#!/usr/bin/env python3
"""Grouped bar charts for the benchmark scripts (matplotlib, Debian's
python3-matplotlib), so that docs/benchmarks.md shows the figures as well
as tables.

As a module: ``grouped_bars(path, title, ylabel, groups, series, note)``.
As a command: ``plot.py RESULTS.json OUT.png`` where RESULTS.json is
``{"title": ..., "ylabel": ..., "groups": ["64 B", ...],
"series": {"s2ds": [..], "testpmd": [..]}, "note": "..."}``.
"""

import json
import sys
from pathlib import Path


def grouped_bars(path, title, ylabel, groups, series, note="", figsize=None):
    """Writes a PNG at `path`: one group of bars per entry of `groups`, one
    bar per series (name -> one value per group), each labelled with its
    value (None: no bar); `figsize` (inches) overrides the size derived from
    the number of bars. Raises if matplotlib is missing (scripts/setup.sh
    installs it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(series)
    for n in names:
        if len(series[n]) != len(groups):
            raise ValueError(f"series {n!r} has {len(series[n])} values for {len(groups)} groups")
    width = 0.8 / max(len(names), 1)
    if figsize is None:
        figsize = (min(11.0, max(4.0, 0.55 * len(groups) * max(len(names), 1) + 2)), 4.0)
    fig, ax = plt.subplots(figsize=figsize, dpi=120)
    for i, n in enumerate(names):
        # A value of None is a measure that does not apply: no bar.
        pts = [(g + (i - (len(names) - 1) / 2) * width, v)
               for g, v in enumerate(series[n]) if v is not None]
        if not pts:
            continue
        bars = ax.bar([x for x, _ in pts], [v for _, v in pts], width, label=n)
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=2)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=20 if len(groups) > 5 else 0,
                       ha="right" if len(groups) > 5 else "center", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.margins(y=0.15)
    if note:
        fig.text(0.01, 0.01, note, fontsize=6, color="0.35")
    fig.tight_layout(rect=(0, 0.04 if note else 0, 1, 1))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[1]).read_text())
    grouped_bars(argv[2], spec["title"], spec["ylabel"], spec["groups"], spec["series"],
                 spec.get("note", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
