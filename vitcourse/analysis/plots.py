"""Plots of the attention analyses. Each returns its matplotlib Figure and draws into the one you
pass (`fig=`), so the widgets can reuse them without touching pyplot's global state."""
from __future__ import annotations

import torch


def _new_figure(fig, figsize):
    if fig is not None:
        fig.clear()
        return fig
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize)


def similarity_mosaic(sim: torch.Tensor) -> torch.Tensor:
    """The (gh, gw, gh, gw) similarities laid out as one image: tile (i, j) is patch (i, j)'s map,
    tiles separated by a one-pixel NaN gap (drawn as background). Shape (gh*(gh+1)-1, gw*(gw+1)-1)."""
    gh, gw = sim.shape[:2]
    out = torch.full((gh * (gh + 1) - 1, gw * (gw + 1) - 1), float("nan"))
    for i in range(gh):
        for j in range(gw):
            out[i * (gh + 1): i * (gh + 1) + gh, j * (gw + 1): j * (gw + 1) + gw] = sim[i, j]
    return out


def plot_position_similarity(sim: torch.Tensor, title: str = "Position embedding similarity",
                             ax=None, fig=None, highlight: tuple[int, int] | None = None):
    """Figure 7 (centre): tile (i, j) shows the cosine similarity of patch (i, j)'s position
    embedding with every patch (rows and columns counted from 0). Draws into `ax` if given, else
    into `fig` (cleared) or a new one."""
    if sim.dim() != 4:
        raise ValueError(f"sim must be (gh, gw, gh, gw) from position_similarity, got shape {tuple(sim.shape)}")
    from matplotlib.patches import Rectangle

    if ax is None:
        fig = _new_figure(fig, (4.6, 4.2))
        ax = fig.add_subplot(1, 1, 1)
    fig = ax.figure
    gh, gw = sim.shape[:2]
    mosaic = similarity_mosaic(sim)
    im = ax.imshow(mosaic.numpy(), cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([j * (gw + 1) + (gw - 1) / 2 for j in range(gw)], [str(j) for j in range(gw)])
    ax.set_yticks([i * (gh + 1) + (gh - 1) / 2 for i in range(gh)], [str(i) for i in range(gh)])
    ax.set_xlabel("Input patch column")
    ax.set_ylabel("Input patch row")
    ax.set_title(title)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if highlight is not None:
        i, j = highlight
        ax.add_patch(Rectangle((j * (gw + 1) - 0.5, i * (gh + 1) - 0.5), gw, gh, fill=False,
                               edgecolor="red", linewidth=2, gid="highlight"))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="Cosine similarity")
    return fig


def plot_embedding_filters(filters: torch.Tensor, ncols: int = 7, title: str = "Patch-embedding filters "
                           "(principal components)", variance: torch.Tensor | None = None, fig=None):
    """Figure 7 (left): each principal component (C, P, P) as a small image (grey for C = 1)."""
    if filters.dim() != 4:
        raise ValueError(f"filters must be (n, C, P, P) from embedding_filters, got shape {tuple(filters.shape)}")
    n = filters.shape[0]
    nrows = -(-n // ncols)
    fig = _new_figure(fig, (1.2 * ncols, 1.25 * nrows + 0.6))
    for k in range(n):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        f = filters[k]
        if f.shape[0] == 3:
            img = f.permute(1, 2, 0)
            img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-12)  # RGB: stretch to [0, 1]
            ax.imshow(img.numpy(), interpolation="nearest")
        else:
            lim = float(f.abs().max())
            ax.imshow(f[0].numpy(), cmap="gray", vmin=-lim, vmax=lim, interpolation="nearest")
        label = f"PC {k + 1}" + (f" ({100 * float(variance[k]):.0f}%)" if variance is not None else "")
        ax.set_title(label, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_mean_attention_distance(distances: torch.Tensor, patch_size: int | None = None,
                                 image_size: int | None = None,
                                 title: str = "Mean attention distance by depth", ax=None, fig=None):
    """Figure 7 (right): one dot per head at each layer (x: layer, y: distance in pixels)."""
    if distances.dim() != 2:
        raise ValueError(f"distances must be (layers, heads) from mean_attention_distance, got shape "
                         f"{tuple(distances.shape)}")
    if ax is None:
        fig = _new_figure(fig, (5.5, 3.8))
        ax = fig.add_subplot(1, 1, 1)
    fig = ax.figure
    layers, heads = distances.shape
    for h in range(heads):
        ax.scatter(torch.arange(1, layers + 1).numpy(), distances[:, h].numpy(), s=30, label=f"head {h + 1}")
    ax.plot(torch.arange(1, layers + 1).numpy(), distances.mean(dim=1).numpy(), color="black",
            linewidth=1, linestyle="--", label="mean over heads")
    if patch_size is not None:
        ax.axhline(patch_size, color="grey", linewidth=0.8, linestyle=":")
        ax.text(layers + 0.4, patch_size, "1 patch", va="bottom", ha="right", fontsize=8, color="grey")
    if image_size is not None:
        ax.set_ylim(0, image_size)
    ax.set_xticks(range(1, layers + 1))
    ax.set_xlabel("Network depth (layer)")
    ax.set_ylabel("Mean attention distance (pixels)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    return fig


def upsample_map(attn_map: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """A (gh, gw) patch map blown up to the image's (H, W) by repeating each patch's value."""
    gh, gw = attn_map.shape
    h, w = image_size
    if h % gh or w % gw:
        raise ValueError(f"image_size {image_size} must be a multiple of the map's grid {(gh, gw)}")
    return attn_map.repeat_interleave(h // gh, dim=0).repeat_interleave(w // gw, dim=1)  # (H, W)


def overlay_attention(ax, image: torch.Tensor, attn_map: torch.Tensor, alpha: float = 0.55,
                      cmap: str = "inferno"):
    """Draw `image` (H, W) in grey with `attn_map` (gh, gw) on top, coloured from 0 to the map's
    largest value (not min-max stretched: a nearly even map should look even). Returns the map's
    AxesImage."""
    img = image.float().squeeze()
    m = attn_map.detach().float()
    ax.imshow(img.numpy(), cmap="gray", interpolation="nearest")
    h, w = img.shape
    return ax.imshow(upsample_map(m, (h, w)).numpy(), cmap=cmap, alpha=alpha, vmin=0,
                     vmax=max(float(m.max()), 1e-12), interpolation="nearest")
