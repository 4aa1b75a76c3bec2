"""Grouped bar charts as PNG for the benchmarks (matplotlib, from the ``bench`` extra)."""

from __future__ import annotations

from pathlib import Path


def bars(path: Path, title: str, groups: list[str], series: dict[str, list[float]], ylabel: str, ax=None) -> None:
    """One panel of grouped bars: ``series`` name -> one value per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        xs = [g + i * width for g in range(len(groups))]
        drawn = ax.bar(xs, values, width, label=name)
        ax.bar_label(drawn, fmt=lambda v: f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}", fontsize=7)
    ax.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))], groups)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    if own:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def panels(path: Path, charts: list[tuple[str, list[str], dict[str, list[float]], str]]) -> None:
    """Several bar panels side by side in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(charts), figsize=(6 * len(charts), 4))
    for ax, (title, groups, series, ylabel) in zip(axes if len(charts) > 1 else [axes], charts, strict=True):
        bars(path, title, groups, series, ylabel, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
