"""The plotting helpers label what they draw."""

import matplotlib.pyplot as plt
import numpy as np

from softmax_grad.plotting import heatmap, new_axes


def test_new_axes_sets_title_labels_and_scales():
    fig, ax = new_axes("T", "x (units)", "y (units)", logy=True)
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("T", "x (units)", "y (units)")
    assert ax.get_yscale() == "log" and ax.get_xscale() == "linear"
    plt.close(fig)


def test_heatmap_is_centred_on_zero_with_labelled_colorbar():
    fig, ax = plt.subplots()
    im = heatmap(
        ax,
        np.array([[1.0, -3.0], [0.5, 2.0]]),
        title="J",
        xlabel="j",
        ylabel="i",
        colorbar_label="value",
        annotate=True,
    )
    assert im.get_clim() == (-3.0, 3.0)
    assert len(ax.texts) == 4
    assert fig.axes[-1].get_ylabel() == "value"
    assert [t.get_color() for t in ax.texts] == ["black", "white", "black", "white"]
    plt.close(fig)


def test_heatmap_shares_a_given_scale():
    fig, ax = plt.subplots()
    im = heatmap(
        ax,
        np.ones((2, 2)),
        title="t",
        xlabel="j",
        ylabel="i",
        colorbar_label="v",
        symmetric=False,
        vmin=0.0,
        vmax=4.0,
    )
    assert im.get_clim() == (0.0, 4.0)
    plt.close(fig)
