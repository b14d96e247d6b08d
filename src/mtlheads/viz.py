"""Every figure of the book, with one look: one figure width, one font size, one colour-blind-safe
colormap (cividis) and palette, layer/head axes named "layer" and "head" (0-based, as in the code).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from nltk import Tree

FIGSIZE = (8.0, 3.2)
CMAP = "cividis"
PALETTE = "colorblind"


def setup() -> None:
    """Apply the book's look to matplotlib and seaborn."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE, font_scale=0.9)
    plt.rcParams.update({"figure.figsize": FIGSIZE, "figure.dpi": 110, "savefig.bbox": "tight",
                         "image.cmap": CMAP, "axes.titlesize": 10})


def subplots(ncols: int = 1, nrows: int = 1, height: float | None = None, **kwargs):
    width, h = FIGSIZE
    return plt.subplots(nrows, ncols, figsize=(width, height or h * nrows), squeeze=False, **kwargs)


def label_bars(counts: Counter, ax, top: int = 20, title: str = "") -> None:
    """Horizontal bars of the most frequent labels, as a share of all items."""
    total = sum(counts.values())
    labels, values = zip(*counts.most_common(top)) if counts else ((), ())
    ax.barh(range(len(labels)), [100 * v / total for v in values], color=sns.color_palette(PALETTE)[0])
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("% of items")
    ax.set_title(f"{title} ({len(counts)} labels)" if title else f"{len(counts)} labels")


def task_label_grid(counts_per_task: dict[str, Counter], top: int = 15):
    """One bar chart of label frequencies per task, side by side."""
    fig, axes = subplots(ncols=len(counts_per_task), height=4.2)
    for ax, (task, counts) in zip(axes[0], counts_per_task.items()):
        label_bars(counts, ax, top=top, title=task.upper())
    fig.tight_layout()
    return fig


def length_histograms(series: dict[str, np.ndarray], xlabel: str, ax, bins: int = 40, clip: int | None = None) -> None:
    """Overlaid normalised histograms, one per named series (e.g. per split)."""
    for name, values in series.items():
        values = np.minimum(values, clip) if clip else values
        ax.hist(values, bins=bins, density=True, histtype="step", linewidth=1.5, label=name)
    ax.set_xlabel(xlabel + (f" (clipped at {clip})" if clip else ""))
    ax.set_ylabel("density")
    ax.legend(frameon=False)


def head_heatmap(values: np.ndarray, ax, title: str = "", vmin: float | None = None, vmax: float | None = None,
                 annotate: bool = False, cbar: bool = True):
    """A (layers, heads) map: rows are layers, columns are heads, both 0-based."""
    sns.heatmap(values, ax=ax, cmap=CMAP, vmin=vmin, vmax=vmax, annot=annotate, fmt=".2f", cbar=cbar,
                square=True, linewidths=0.3, annot_kws={"fontsize": 6})
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title)
    return ax


def matrix_heatmap(table, title: str = "", xlabel: str = "", ylabel: str = ""):
    """A small annotated matrix (a DataFrame: its index as rows, its columns as columns), e.g. models
    against probes; one figure."""
    fig, axes = subplots(height=0.45 * len(table) + 1.2)
    sns.heatmap(table, ax=axes[0, 0], cmap=CMAP, annot=True, fmt=".1f", linewidths=0.3,
                annot_kws={"fontsize": 8}, cbar_kws={"shrink": 0.8})
    axes[0, 0].set(xlabel=xlabel, ylabel=ylabel, title=title)
    fig.tight_layout()
    return fig


def draw_tree(tree: str | Tree, ax, words: Sequence[str] | None = None) -> None:
    """Draw a constituency tree: leaves on the bottom row in order, each phrase above its children."""
    tree = Tree.fromstring(tree) if isinstance(tree, str) else tree
    leaves = list(words) if words is not None else tree.leaves()
    depth = tree.height()
    counter = iter(range(len(leaves)))

    def place(node, level: int) -> float:
        if isinstance(node, str):
            x = next(counter)
            ax.text(x, -depth, leaves[x], ha="center", va="top", rotation=45, fontsize=8)
            return x
        xs = [place(child, level + 1) for child in node]
        x = float(np.mean(xs))
        for child, cx in zip(node, xs):
            child_y = -depth + 0.15 if isinstance(child, str) else -(level + 1)
            ax.plot([x, cx], [-level - 0.15, child_y + 0.15], color="0.6", linewidth=0.8)
        ax.text(x, -level, node.label(), ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "0.7", "lw": 0.5})
        return x

    place(tree, 0)
    ax.set_xlim(-1, len(leaves))
    ax.set_ylim(-depth - 1.8, 0.6)
    ax.axis("off")


def dev_curves(curves, tasks=None):
    """Dev score against epoch, one panel per task, one line per setting (mean over seeds)."""
    tasks = tasks or list(dict.fromkeys(curves["task"]))
    fig, axes = subplots(ncols=len(tasks), height=2.6)
    for ax, task in zip(axes[0], tasks):
        sub = curves[curves["task"] == task]
        sns.lineplot(data=sub, x="epoch", y="score", hue="setting", ax=ax, marker="o", errorbar=None,
                     legend=ax is axes[0, -1])
        ax.set_title(task.upper())
        ax.set_ylabel("dev score" if ax is axes[0, 0] else "")
    if axes[0, -1].get_legend():
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1, 1), frameon=False)
    fig.tight_layout()
    return fig


def gap_curve(curve, setting: str, tasks=None):
    """The MTL - STL dev gap against encoder updates (log scale), one panel per task: each seed a
    thin line, their mean a thick one, zero dashed."""
    tasks = tasks or list(dict.fromkeys(curve["task"]))
    fig, axes = subplots(ncols=len(tasks), height=2.6, sharey=False)
    colour = sns.color_palette(PALETTE)[0]
    for ax, task in zip(axes[0], tasks):
        sub = curve[curve["task"] == task]
        for _, seed in sub.groupby("seed"):
            ax.plot(seed["updates"], seed["gap"], color=colour, alpha=0.35, linewidth=0.8)
        mean = sub.groupby("updates")["gap"].mean()
        ax.plot(mean.index, mean.values, color=colour, linewidth=2, marker="o", markersize=3)
        ax.axhline(0, color="0.4", linestyle="--", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_title(task.upper())
        ax.set_xlabel("encoder updates")
        ax.set_ylabel(f"{setting} - STL (dev)" if ax is axes[0, 0] else "")
    fig.tight_layout()
    return fig


def head_maps(maps: dict[str, np.ndarray], ncols: int = 3, vmin: float = 0.0, vmax: float = 1.0, title: str = ""):
    """A grid of (layers, heads) maps with one shared colour scale."""
    nrows = -(-len(maps) // ncols)
    fig, axes = subplots(ncols=ncols, nrows=nrows, height=2.0 * nrows)
    for i, (ax, (name, values)) in enumerate(zip(axes.flat, maps.items())):
        head_heatmap(values, ax, title=name, vmin=vmin, vmax=vmax, cbar=False)
        if i % ncols:  # axis names once per row and column, so neighbours do not overlap
            ax.set_ylabel("")
        if i < len(maps) - ncols:
            ax.set_xlabel("")
    for ax in list(axes.flat)[len(maps):]:
        ax.axis("off")
    fig.colorbar(axes.flat[0].collections[0], ax=axes, shrink=0.6, label=title)
    return fig


def best_head_scatter(best, tasks: Sequence[str], layers: int):
    """Per task: each label's best-head accuracy against that head's layer (one dot per label)."""
    fig, axes = subplots(ncols=len(tasks), height=2.6, sharey=True)
    rng = np.random.default_rng(0)
    for ax, task in zip(axes[0], tasks):
        sub = best[best["task"] == task]
        jitter = rng.uniform(-0.15, 0.15, len(sub))
        ax.scatter(sub["layer"] + jitter, sub["accuracy"], s=12, alpha=0.7, color=sns.color_palette(PALETTE)[0])
        ax.set_xticks(range(layers))
        ax.set_xlim(-0.5, layers - 0.5)
        ax.set_xlabel("layer")
        ax.set_title(task.upper())
    axes[0, 0].set_ylabel("best-head accuracy (%)")
    fig.tight_layout()
    return fig


def delta_plot(table, settings: Sequence[str], ax, title: str = "") -> None:
    """One marker per label and setting: its best-head accuracy minus STL's (labels by frequency)."""
    x = np.arange(len(table))
    markers = "osD^v<>"
    for i, setting in enumerate(settings):
        ax.scatter(x, table[f"{setting} - STL"], s=14, marker=markers[i % len(markers)], label=setting)
    ax.axhline(0, color="0.5", linewidth=0.8)
    ax.set_xticks(x, table["label"], rotation=90, fontsize=6)
    ax.set_ylabel("Δ to STL (points)")
    ax.set_title(title)


def interval_bars(table, measures: Sequence[str], ax, group: str = "model", hue: str = "input") -> None:
    """Grouped bars of ``table``'s ``mean`` per measure, one bar per (group, hue), with the
    ``low``-``high`` interval as an error bar (table: rows of measure, group, hue, mean, low, high)."""
    keys = list(dict.fromkeys(zip(table[group], table[hue])))
    width = 0.8 / len(keys)
    for k, key in enumerate(keys):
        rows = table[(table[group] == key[0]) & (table[hue] == key[1])].set_index("measure").reindex(measures)
        x = np.arange(len(measures)) + (k - (len(keys) - 1) / 2) * width
        ax.bar(x, rows["mean"], width, label=f"{key[0]}: {key[1]}",
               yerr=[rows["mean"] - rows["low"], rows["high"] - rows["mean"]], capsize=2)
    ax.set_xticks(np.arange(len(measures)), [m.replace(" (%)", "") for m in measures], rotation=20, ha="right",
                  fontsize=8)
    ax.set_ylabel("%")
    ax.legend(frameon=False, fontsize=7)


def rgb_head_maps(maps: dict[str, np.ndarray], ncols: int = 3, title: str = ""):
    """A grid of (layers, heads, 3) maps in [0, 1] shown as colours, one channel per run (the
    Stem Cell paper's gate maps: white where every run keeps the head, black where none does)."""
    nrows = -(-len(maps) // ncols)
    fig, axes = subplots(ncols=ncols, nrows=nrows, height=2.0 * nrows)
    for i, (ax, (name, values)) in enumerate(zip(axes.flat, maps.items())):
        values = np.clip(np.asarray(values, dtype=float), 0.0, 1.0)
        if values.shape[-1] < 3:  # fewer runs than channels: the missing ones dark
            values = np.concatenate([values, np.zeros((*values.shape[:-1], 3 - values.shape[-1]))], -1)
        ax.imshow(values, aspect="equal", interpolation="nearest")
        ax.set_title(name)
        ax.set_xticks(range(values.shape[1]))
        ax.set_yticks(range(values.shape[0]))
        ax.tick_params(labelsize=6)
        if i % ncols == 0:
            ax.set_ylabel("layer")
        if i >= len(maps) - ncols:
            ax.set_xlabel("head")
    for ax in list(axes.flat)[len(maps):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
