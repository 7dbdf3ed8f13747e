"""Looking inside a trained ViT: attention maps, attention rollout, mean attention distance,
position-embedding similarity and patch-embedding filters (the ViT paper's Figure 6 and 7).

Everything here is a plain function of tensors, except `capture_attention`, which runs a model
once. Plot helpers return a matplotlib Figure and draw into the one you pass (`fig=`), so the
widgets in `vitcourse.widgets` can reuse them without touching pyplot's global state.

How attention maps are captured: every `MultiHeadSelfAttention` owns an `AttentionProbe`, an
identity module that its *explicit* path calls with the softmax weights (B, heads, N, N). A
forward hook on each probe records them. The fused kernel (`F.scaled_dot_product_attention`) never
materialises the weights, so `capture_attention` switches every attention to the explicit path for
one forward pass and switches it back afterwards. Public rollout code that monkey-patched timm's
attention broke silently when timm moved to the fused kernel; here a probe that was not called is
an error, not an empty map.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import torch
import torch.nn as nn

AttentionList = Sequence[torch.Tensor]


# ----------------------------------------------------------------------------------------------
# Capturing attention maps
# ----------------------------------------------------------------------------------------------
def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The model's attention modules that carry a probe, in forward order (one per layer).

    Duck-typed on the contract of `vitcourse.attention.MultiHeadSelfAttention`: a module with a
    `.probe` submodule and a boolean `.fused` switch.
    """
    return [m for m in model.modules()
            if isinstance(getattr(m, "probe", None), nn.Module) and isinstance(getattr(m, "fused", None), bool)]


def _model_impl(model: nn.Module) -> str | None:
    config = getattr(model, "config", None)
    impl = getattr(config, "attn_impl", None)
    return impl if isinstance(impl, str) else None


@contextlib.contextmanager
def explicit_attention(model: nn.Module) -> Iterator[list[nn.Module]]:
    """Within the block, every attention in `model` runs the explicit path (which calls its probe);
    the previous settings come back afterwards, also when the block raises."""
    modules = attention_modules(model)
    saved_fused = [m.fused for m in modules]
    saved_impl = _model_impl(model)
    has_switch = callable(getattr(model, "set_attn_impl", None)) and saved_impl is not None
    try:
        if has_switch:
            model.set_attn_impl("explicit")  # so "auto" cannot pick the fused kernel at forward time
        for m in modules:
            m.fused = False
        yield modules
    finally:
        if has_switch:
            model.set_attn_impl(saved_impl)
        for m, fused in zip(modules, saved_fused):
            m.fused = fused


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def prepare_images(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Model input from `images`: uint8 pixels (B, H, W) / (B, 1, H, W) are normalised (and resized
    to the model's `config.image_size`) like the training data; float (B, C, H, W) passes as is."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dtype == torch.uint8:
        from .data import normalize

        if images.dim() not in (3, 4):
            raise ValueError(f"images (uint8) must be (B, H, W) or (B, 1, H, W), got shape {tuple(images.shape)}")
        size = getattr(getattr(model, "config", None), "image_size", None)
        size = size if isinstance(size, int) and size != images.shape[-1] else None
        images = normalize(images, size)  # (B, 1, S, S)
    elif images.dim() != 4:
        raise ValueError(f"images (float) must be (B, C, H, W), got shape {tuple(images.shape)}")
    return images.to(_model_device(model))


@torch.no_grad()
def capture_attention(model: nn.Module, images: torch.Tensor, return_logits: bool = False
                      ) -> list[torch.Tensor] | tuple[list[torch.Tensor], torch.Tensor]:
    """Attention weights of every layer from ONE forward pass, via hooks on the attention probes.

    The model runs in eval mode (no dropout) on the explicit attention path; its mode and attention
    settings are restored afterwards, even on error.

    Args:
        model: a ViT (any model whose attentions follow the `AttentionProbe` contract).
        images: uint8 pixels (B, H, W) / (B, 1, H, W), normalised here, or model-ready float (B, C, H, W).
        return_logits: also return the model's output from the same pass.

    Returns:
        One float32 CPU tensor (B, heads, N, N) per layer, rows = queries, columns = keys, each row
        summing to 1; with `return_logits`, the pair (attentions, logits (B, classes) on the CPU).
    """
    modules = attention_modules(model)
    if not modules:
        raise ValueError("model has no attention modules with a `.probe` (AttentionProbe) and a `.fused` "
                         f"switch; got a {type(model).__name__}")
    x = prepare_images(model, images)
    captured: list[list[torch.Tensor]] = [[] for _ in modules]

    def make_hook(i: int):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            captured[i].append(output.detach().float().cpu())
        return hook

    was_training = model.training
    handles = [m.probe.register_forward_hook(make_hook(i)) for i, m in enumerate(modules)]
    try:
        model.eval()
        with explicit_attention(model):
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for i, maps in enumerate(captured):
        if len(maps) != 1:
            raise RuntimeError(f"the probe of attention layer {i} was called {len(maps)} times in one "
                               "forward pass (expected once): does this attention still take the "
                               "fused path, or is it shared between layers?")
    attentions = [maps[0] for maps in captured]
    return (attentions, logits.detach().float().cpu()) if return_logits else attentions


def _check_attentions(attentions: AttentionList, name: str = "attentions") -> torch.Tensor:
    """Stack a list of per-layer (B, H, N, N) maps into (L, B, H, N, N), with checks."""
    if isinstance(attentions, torch.Tensor):
        attentions = [attentions] if attentions.dim() == 4 else list(attentions)
    if len(attentions) == 0:
        raise ValueError(f"{name} must hold at least one layer's (B, heads, N, N) weights, got none")
    shapes = {tuple(a.shape) for a in attentions}
    first = tuple(attentions[0].shape)
    if len(shapes) != 1 or len(first) != 4 or first[-1] != first[-2]:
        raise ValueError(f"{name} must be (B, heads, N, N) per layer, all the same shape; got "
                         f"{sorted(shapes)}")
    return torch.stack([a.float() for a in attentions])  # (L, B, H, N, N)


def _is_square(n: int) -> bool:
    return n > 0 and math.isqrt(n) ** 2 == n


def infer_prefix_tokens(num_tokens: int) -> int:
    """Guess the number of prefix (class) tokens from N when the patch grid is square: 0 if N is a
    square, 1 if N - 1 is. Pass `num_prefix_tokens` explicitly for non-square grids."""
    if _is_square(num_tokens):
        return 0
    if _is_square(num_tokens - 1):
        return 1
    raise ValueError(f"cannot infer num_prefix_tokens from N={num_tokens} tokens (neither N nor N-1 is "
                     "a square number); pass num_prefix_tokens explicitly")


# ----------------------------------------------------------------------------------------------
# Attention rollout (Abnar & Zuidema, 2020)
# ----------------------------------------------------------------------------------------------
HEAD_FUSIONS = ("mean", "max", "min")


def rollout_matrix(attentions: AttentionList, head_fusion: str = "mean",
                   discard_ratio: float = 0.0) -> torch.Tensor:
    """The rolled-out attention (B, N, N): how much each output token draws on each input token.

    Per layer: fuse the heads, optionally zero the weakest weights, add the identity (the residual
    connection), renormalise each row to sum to 1, then multiply the layers: R = A_L ... A_2 A_1.

    Args:
        attentions: per layer (B, heads, N, N), as from `capture_attention`.
        head_fusion: "mean" (as in the paper), "max" or "min" over heads.
        discard_ratio: fraction of each layer's fused weights (per image) set to zero before the
            identity is added, weakest first; 0 keeps all (the paper's method).
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    if not isinstance(discard_ratio, (int, float)) or not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be a number in [0, 1), got {discard_ratio!r}")
    stacked = _check_attentions(attentions)  # (L, B, H, N, N)
    _, b, _, n, _ = stacked.shape
    eye = torch.eye(n)
    result = eye.expand(b, n, n).clone()  # (B, N, N)
    for layer in stacked:  # (B, H, N, N), first layer first
        if head_fusion == "mean":
            a = layer.mean(dim=1)  # (B, N, N)
        elif head_fusion == "max":
            a = layer.amax(dim=1)
        else:
            a = layer.amin(dim=1)
        if discard_ratio > 0:
            flat = a.reshape(b, -1).clone()  # (B, N*N)
            k = int(flat.shape[1] * discard_ratio)
            if k > 0:
                weakest = flat.topk(k, dim=-1, largest=False).indices
                flat.scatter_(1, weakest, 0.0)
            a = flat.reshape(b, n, n)
        a = a + eye  # the residual path carries each token's own value through the layer
        # keepdim=True: divide each ROW by its own sum. Without it, (B, N) broadcasts against the
        # last axis and divides column j by row j's sum, a bug in widely copied rollout code.
        a = a / a.sum(dim=-1, keepdim=True)
        result = a @ result  # later layers act on what earlier layers produced
    return result


def attention_rollout(attentions: AttentionList, head_fusion: str = "mean", discard_ratio: float = 0.0,
                      num_prefix_tokens: int | None = None,
                      grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Attention rollout over the patches: (B, num_patches), or (B, gh, gw) when `grid` is given.

    With a class token (`num_prefix_tokens=1`) this is the class token's row of the rolled-out
    matrix, over the patch columns (the class-token column is dropped, so the values sum to less
    than 1). A mean-pooled model has no class token: its output is the mean of all final tokens,
    so we return the MEAN OVER QUERY ROWS of the rolled-out matrix, i.e. how much the pooled
    representation draws on each input patch (these sum to 1).

    Args:
        attentions, head_fusion, discard_ratio: as in `rollout_matrix`.
        num_prefix_tokens: 1 (class token) or 0 (mean pooling); None infers it from N for square
            grids (see `infer_prefix_tokens`).
        grid: (gh, gw) to reshape the result to the patch grid.
    """
    rollout = rollout_matrix(attentions, head_fusion, discard_ratio)  # (B, N, N)
    n = rollout.shape[-1]
    prefix = infer_prefix_tokens(n) if num_prefix_tokens is None else num_prefix_tokens
    if prefix not in (0, 1):
        raise ValueError(f"num_prefix_tokens must be 0 (mean pooling) or 1 (class token), got {prefix!r}")
    if prefix == 1:
        out = rollout[:, 0, 1:]  # (B, N-1): what the class token draws from each patch
    else:
        out = rollout.mean(dim=1)  # (B, N): what the mean-pooled output draws from each patch
    if grid is not None:
        gh, gw = _check_grid(grid)
        if gh * gw != out.shape[-1]:
            raise ValueError(f"grid {grid} has {gh * gw} patches but the attention covers {out.shape[-1]}")
        out = out.reshape(-1, gh, gw)  # (B, gh, gw)
    return out


# ----------------------------------------------------------------------------------------------
# Mean attention distance (Figure 7, right)
# ----------------------------------------------------------------------------------------------
def _check_grid(grid: Sequence[int]) -> tuple[int, int]:
    if (not isinstance(grid, (tuple, list)) or len(grid) != 2
            or not all(isinstance(g, int) and g > 0 for g in grid)):
        raise ValueError(f"grid must be (rows, cols) of positive ints, got {grid!r}")
    return int(grid[0]), int(grid[1])


def patch_distances(grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """(N, N) Euclidean distances in pixels between the centres of the patches of a row-major grid."""
    gh, gw = _check_grid(grid)
    if not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    centres = torch.stack([rows.flatten(), cols.flatten()], dim=-1).float() * patch_size  # (N, 2)
    return torch.cdist(centres, centres)  # (N, N)


def mean_attention_distance(attentions: AttentionList, grid: tuple[int, int], patch_size: int,
                            num_prefix_tokens: int = 0) -> torch.Tensor:
    """Mean attention distance in pixels per layer and head: (L, heads).

    For each query patch q the distance is sum_k a[q, k] * d(q, k), with d the distance in pixels
    between patch centres; it is averaged over query patches and over the images in the batch
    (pass many images for a stable estimate). This is the ViT paper's "attention distance",
    analogous to a CNN's receptive field size.

    Class token: it has no position, so its row (as a query) and its column (as a key) are dropped.
    The remaining patch-to-patch weights of each row are renormalised to sum to 1, so the value
    says where among the patches a query looks, not how much it looks at the class token. (Without
    renormalising, a head that mostly attends to the class token would look "local".)

    Args:
        attentions: per layer (B, heads, N, N), N = num_prefix_tokens + gh * gw.
        grid: (gh, gw) patch grid, row-major as in `patchify`.
        patch_size: pixels per patch side (the grid step).
        num_prefix_tokens: 1 for a class token, 0 for mean pooling.
    """
    stacked = _check_attentions(attentions)  # (L, B, H, N, N)
    gh, gw = _check_grid(grid)
    if not isinstance(num_prefix_tokens, int) or num_prefix_tokens < 0:
        raise ValueError(f"num_prefix_tokens must be a non-negative int, got {num_prefix_tokens!r}")
    n = stacked.shape[-1]
    if n != num_prefix_tokens + gh * gw:
        raise ValueError(f"attention maps cover N={n} tokens, but grid {(gh, gw)} with "
                         f"num_prefix_tokens={num_prefix_tokens} means {num_prefix_tokens + gh * gw}")
    dist = patch_distances((gh, gw), patch_size)  # (P, P), P = gh * gw
    a = stacked[..., num_prefix_tokens:, num_prefix_tokens:]  # (L, B, H, P, P): patches only
    a = a / a.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    per_query = (a * dist).sum(dim=-1)  # (L, B, H, P)
    return per_query.mean(dim=(1, 3))  # (L, H)


def model_attention_distance(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """`mean_attention_distance` of `model` over many `images`, captured batch by batch: (L, heads).

    Distances are in the model's input pixels (patch size `model.config.patch_size`); each batch
    counts in proportion to its number of images.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    grid = tuple(getattr(model, "grid_size", ()))
    patch = getattr(getattr(model, "config", None), "patch_size", None)
    if len(grid) != 2 or not isinstance(patch, int):
        raise ValueError("model must have `.grid_size` and `.config.patch_size` (a vitcourse ViT), "
                         f"got a {type(model).__name__}")
    prefix = int(getattr(model, "num_prefix_tokens", 0))
    total, count = None, 0
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        d = mean_attention_distance(capture_attention(model, batch), grid, patch, prefix) * len(batch)
        total = d if total is None else total + d
        count += len(batch)
    if total is None:
        raise ValueError("images must hold at least one image, got none")
    return total / count


# ----------------------------------------------------------------------------------------------
# Position embeddings (Figure 7, centre) and patch-embedding filters (Figure 7, left)
# ----------------------------------------------------------------------------------------------
def position_similarity(pos_embed: torch.Tensor, grid: tuple[int, int],
                        num_prefix_tokens: int = 0) -> torch.Tensor:
    """Cosine similarity of every patch's position embedding with every other: (gh, gw, gh, gw).

    `sim[i, j]` is the (gh, gw) map of patch (i, j)'s similarity with all patches, i.e. one tile
    of the paper's Figure 7 (centre). The class token's embedding (the first `num_prefix_tokens`
    rows) is excluded.

    Args:
        pos_embed: (1, prefix + gh * gw, D) or (prefix + gh * gw, D).
        grid: (gh, gw) patch grid.
        num_prefix_tokens: leading tokens without a grid position (1 for a class token).
    """
    if not isinstance(pos_embed, torch.Tensor):
        raise ValueError(f"pos_embed must be a tensor (1, N, D) or (N, D), got {type(pos_embed).__name__}")
    gh, gw = _check_grid(grid)
    e = pos_embed.detach().float().cpu()
    if e.dim() == 3 and e.shape[0] == 1:
        e = e[0]  # (N, D)
    if e.dim() != 2:
        raise ValueError(f"pos_embed must be (1, N, D) or (N, D), got shape {tuple(pos_embed.shape)}")
    if not isinstance(num_prefix_tokens, int) or num_prefix_tokens < 0:
        raise ValueError(f"num_prefix_tokens must be a non-negative int, got {num_prefix_tokens!r}")
    if e.shape[0] != num_prefix_tokens + gh * gw:
        raise ValueError(f"pos_embed has {e.shape[0]} tokens, but grid {(gh, gw)} with "
                         f"num_prefix_tokens={num_prefix_tokens} needs {num_prefix_tokens + gh * gw}")
    e = e[num_prefix_tokens:]  # (P, D): patches only
    e = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return (e @ e.T).reshape(gh, gw, gh, gw)  # (P, P) -> (gh, gw, gh, gw)


def embedding_filters(patch_embed_weight: torch.Tensor, n: int = 28, channels: int | None = None,
                      return_variance: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The top `n` principal components of the patch-embedding filters, as patch images (n, C, P, P).

    Each of the D output units of the patch embedding is a filter over a P x P x C patch. We treat
    the D filters as samples, subtract their mean, and take the right singular vectors: the
    directions in pixel space the embedding is most sensitive to (the paper's Figure 7, left).
    Signs are arbitrary in PCA; we flip each component so its largest-magnitude pixel is positive.

    Args:
        patch_embed_weight: the conv weight (D, C, P, P) of `PatchEmbed.proj`, or a linear weight
            (D, P * P * C) in `patchify`'s (p1, p2, c) order (then give `channels`, default 1).
        n: number of components, at most min(D, C * P * P).
        return_variance: also return the fraction of variance each component explains (n,).
    """
    w = patch_embed_weight.detach().float().cpu()
    if w.dim() == 4:
        d, c, p, q = w.shape
        if p != q:
            raise ValueError(f"patch_embed_weight must have square patches, got shape {tuple(w.shape)}")
        flat = w.reshape(d, c * p * p)  # (D, C*P*P) in (c, p1, p2) order
    elif w.dim() == 2:
        c = channels or 1
        d, k = w.shape
        p = math.isqrt(k // c) if k % c == 0 else 0
        if p * p * c != k:
            raise ValueError(f"a linear patch_embed_weight (D, P*P*C) needs P*P*C columns with "
                             f"channels={c}; got {k} columns")
        flat = w.reshape(d, p, p, c).permute(0, 3, 1, 2).reshape(d, c * p * p)  # (p1 p2 c) -> (c p1 p2)
    else:
        raise ValueError(f"patch_embed_weight must be (D, C, P, P) or (D, P*P*C), got shape {tuple(w.shape)}")
    limit = min(flat.shape)
    if not isinstance(n, int) or not 1 <= n <= limit:
        raise ValueError(f"n must be an int between 1 and {limit} (min of D and C*P*P), got {n!r}")
    centred = flat - flat.mean(dim=0, keepdim=True)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)  # vh: (min, C*P*P)
    comps = vh[:n]
    signs = torch.sign(comps.gather(1, comps.abs().argmax(dim=1, keepdim=True)))
    comps = comps * torch.where(signs == 0, torch.ones_like(signs), signs)
    filters = comps.reshape(n, c, p, p)  # (n, C, P, P)
    if return_variance:
        var = s ** 2
        return filters, (var / var.sum().clamp_min(1e-12))[:n]
    return filters


# ----------------------------------------------------------------------------------------------
# Plots (each returns its Figure; pass `fig` to draw into an existing one)
# ----------------------------------------------------------------------------------------------
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
