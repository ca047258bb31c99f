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
    value; `figsize` (inches) overrides the size derived from the number of
    bars. Raises if matplotlib is missing (scripts/setup.sh installs it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(series)
    for n in names:
        if len(series[n]) != len(groups):
            raise ValueError(f"series {n!r} has {len(series[n])} values for {len(groups)} groups")
    width = 0.8 / max(len(names), 1)
    if figsize is None:
        figsize = (max(4.0, 1.6 * len(groups) * max(len(names), 1) / 2 + 2), 3.6)
    fig, ax = plt.subplots(figsize=figsize, dpi=120)
    for i, n in enumerate(names):
        xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, series[n], width, label=n)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
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
