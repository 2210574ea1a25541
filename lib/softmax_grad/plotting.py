"""One figure style for every chapter: titled, labelled axes at page width (needs matplotlib)."""

from __future__ import annotations

import numpy as np

_STYLE = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "image.cmap": "RdBu_r",
}


def use_book_style() -> None:
    """Apply the book's matplotlib style to every later figure."""
    import matplotlib as mpl

    mpl.rcParams.update(_STYLE)


def new_axes(title: str, xlabel: str, ylabel: str, *, figsize=None, logx=False, logy=False):
    """A figure with one axes carrying its title and axis labels (include units in the labels).

    Returns
    -------
    fig, ax : matplotlib Figure and Axes
    """
    import matplotlib.pyplot as plt

    use_book_style()
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    return fig, ax


def heatmap(
    ax,
    matrix,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    colorbar_label: str,
    symmetric: bool = True,
    annotate: bool = False,
    fmt: str = "{:.3f}",
):
    """Draw ``matrix`` (shape (rows, cols)) on ``ax`` with a labelled colour bar.

    ``symmetric`` centres a diverging colour map on 0, so signs read at a glance; ``annotate``
    writes each value into its cell (for small matrices).
    """
    m = np.asarray(matrix, dtype=float)
    vmax = float(np.nanmax(np.abs(m))) if symmetric and m.size else None
    kwargs = {"vmin": -vmax, "vmax": vmax} if vmax else {}
    if not symmetric:
        kwargs["cmap"] = "viridis"
    im = ax.imshow(m, **kwargs)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(False)
    ax.figure.colorbar(im, ax=ax, label=colorbar_label)
    if annotate:
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8)
    return im
