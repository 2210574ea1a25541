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
    vmin: float | None = None,
    vmax: float | None = None,
):
    """Draw ``matrix`` (shape (rows, cols)) on ``ax`` with a labelled colour bar.

    ``symmetric`` centres a diverging colour map on 0, so signs read at a glance; ``vmin`` and
    ``vmax`` fix the colour scale (to share it between panels); ``annotate`` writes each value
    into its cell, in white on dark cells, for small matrices. Ticks are the integer indices.
    """
    import matplotlib.ticker as mticker

    m = np.asarray(matrix, dtype=float)
    if symmetric:
        bound = float(np.nanmax(np.abs(m))) if m.size else 1.0
        vmin = -bound if vmin is None else vmin
        vmax = bound if vmax is None else vmax
    im = ax.imshow(m, vmin=vmin, vmax=vmax, cmap="RdBu_r" if symmetric else "viridis")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(False)
    ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    ax.figure.colorbar(im, ax=ax, label=colorbar_label)
    if annotate:
        lo, hi = im.get_clim()
        for (i, j), v in np.ndenumerate(m):
            # Dark cells are the ends of a diverging map and the low end of viridis.
            t = (v - lo) / (hi - lo) if hi > lo else 0.5
            dark = (t < 0.2 or t > 0.8) if symmetric else t < 0.5
            ax.text(
                j,
                i,
                fmt.format(v),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else "black",
            )
    return im
