"""Interactive explorers (ipywidgets 8): what a Vision Transformer sees.

- `PatchExplorer`: an image cut into patches; the token sequence; sequence length and attention cost.
- `PositionEmbeddingExplorer`: cosine similarity of the learned position embeddings (Figure 7, centre).
- `AttentionExplorer`: attention maps per layer / head / query, attention rollout, the prediction.
- `CorruptionExplorer`: a corrupted image through a ViT and a CNN, with the ViT's attention rollout.

Each explorer is one object: build it, call `.display()` in a notebook to play with it, or call
`.figure()` for a static matplotlib Figure of its current state (what nbval, the book and plain
scripts show). Controls are public attributes (`explorer.layer.value = 3`), so tests and scripts
can drive them without a browser. Figures are `matplotlib.figure.Figure` objects that pyplot does
not track: nothing piles up in pyplot's figure list as the sliders move.
"""
from __future__ import annotations

import contextlib
import io
from typing import Iterator, Sequence

import ipywidgets as widgets
import torch
import torch.nn as nn
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from . import capture, corruption_suite, plots, position, rollout
from .corruptions import pixels_to_input
from .representations import eval_mode
from ..data import CLASS_NAMES

__all__ = ["PatchExplorer", "PositionEmbeddingExplorer", "AttentionExplorer", "CorruptionExplorer"]


def _test_images() -> tuple[torch.Tensor, torch.Tensor]:
    from ..data import load_data

    data = load_data()
    return data.test_images, data.test_labels


def _check_images(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() not in (3, 4):
        raise ValueError("images must be a uint8 tensor (N, H, W) or (N, 1, H, W), got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    if images.dim() == 4:
        if images.shape[1] != 1:
            raise ValueError(f"images must have one channel, got shape {tuple(images.shape)}")
        images = images[:, 0]  # (N, H, W)
    if not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be a tensor of shape ({images.shape[0]},), got "
                         f"{tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__}")
    return images, labels


class StaticFigure(Figure):
    """A Figure that shows itself as a PNG in Jupyter even before pyplot's inline backend is set
    up (a notebook's first figure may come from a widget), and that pyplot does not track."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=self.dpi)
        return buf.getvalue()


class _Explorer:
    """Shared machinery: controls -> redraw into a PNG `Image` widget; `.figure()` for a static copy."""

    figsize: tuple[float, float] = (9.0, 3.6)
    dpi: int = 90

    def __init__(self) -> None:
        self.image_widget = widgets.Image(format="png")
        self._ui: widgets.Widget | None = None
        self._held = 0
        self.redraws = 0  # how many times the displayed picture was redrawn

    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """Change several controls, redraw once at the end."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        self.refresh()

    # subclasses implement `_controls()` (a widget) and `_draw(fig)`
    def _controls(self) -> widgets.Widget:  # pragma: no cover - abstract
        raise NotImplementedError

    def _draw(self, fig: Figure) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def figure(self) -> Figure:
        """A new matplotlib Figure showing the current state: a notebook shows it as a PNG; in a
        plain script save it (``ex.figure().savefig("state.png")``), since pyplot does not track
        it and ``plt.show()`` would show nothing."""
        fig = StaticFigure(figsize=self.figsize, dpi=self.dpi)
        FigureCanvasAgg(fig)
        self._draw(fig)
        return fig

    def refresh(self, *_: object) -> None:
        """Redraw the displayed image (called on every control change)."""
        if self._ui is None or self._held:  # not displayed yet, or inside _batch()
            return
        self.redraws += 1
        fig = self.figure()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=self.dpi)
        self.image_widget.value = buf.getvalue()

    @property
    def ui(self) -> widgets.Widget:
        """The widget tree (controls above the picture)."""
        if self._ui is None:
            self._ui = widgets.VBox([self._controls(), self.image_widget])
            self.refresh()
        return self._ui

    def display(self) -> None:
        """Show the explorer in a notebook."""
        from IPython.display import display

        display(self.ui)

    def _observe(self, *controls: widgets.Widget) -> None:
        for c in controls:
            c.observe(self.refresh, names="value")

    def _picker_class_changed(self, _change: object) -> None:
        with self._batch():
            self.picker.sync()


class _ImagePicker:
    """A class dropdown and an index slider over that class's images."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str]) -> None:
        self.images, self.labels = _check_images(images, labels)
        self.class_names = tuple(class_names)
        present = sorted(int(c) for c in labels.unique())
        if any(not 0 <= c < len(self.class_names) for c in present):
            raise ValueError(f"labels must lie in 0..{len(self.class_names) - 1} (one per class name), "
                             f"got {present}")
        self.class_picker = widgets.Dropdown(options=[(self.class_names[c], c) for c in present],
                                             value=present[0], description="class")
        self.index = widgets.IntSlider(value=0, min=0, max=self._count() - 1, description="image",
                                       continuous_update=False)

    def _count(self) -> int:
        return int((self.labels == self.class_picker.value).sum())

    def sync(self) -> None:
        """Fit the index slider to the chosen class (call after the class changed)."""
        self.index.max = self._count() - 1  # lowering max also clamps the value

    @property
    def position(self) -> int:
        """Index of the chosen image in `images`."""
        where = (self.labels == self.class_picker.value).nonzero().flatten()
        return int(where[self.index.value])

    @property
    def image(self) -> torch.Tensor:
        """The chosen image (H, W) uint8."""
        return self.images[self.position]

    @property
    def label(self) -> int:
        return int(self.labels[self.position])

    def select(self, position: int) -> None:
        """Choose the image at `position` in `images` (sets the class and index controls)."""
        if not 0 <= position < len(self.labels):
            raise ValueError(f"position must be in 0..{len(self.labels) - 1}, got {position}")
        c = int(self.labels[position])
        self.class_picker.value = c
        where = (self.labels == c).nonzero().flatten().tolist()
        self.index.value = where.index(position)


# ----------------------------------------------------------------------------------------------
class PatchExplorer(_Explorer):
    """An image cut into P x P patches, the token sequence it becomes, and what that costs.

    Args:
        images, labels: uint8 images (N, H, W) and labels (N,); default: the test split of
            `vitcourse.load_data()` (a subset in fast mode).
        class_names: one name per label.
        patch_sizes: the slider's choices; default: every size that divides the image.
        patch_size: the starting patch size.
    """

    figsize = (10.0, 3.4)

    def __init__(self, images: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                 class_names: Sequence[str] = CLASS_NAMES, patch_sizes: Sequence[int] | None = None,
                 patch_size: int = 7) -> None:
        super().__init__()
        if images is None:
            images, labels = _test_images()
        self.picker = _ImagePicker(images, labels, class_names)
        self.class_picker, self.index = self.picker.class_picker, self.picker.index
        h, w = self.picker.images.shape[-2:]
        sizes = list(patch_sizes) if patch_sizes is not None else [p for p in range(1, min(h, w) + 1)
                                                                     if h % p == 0 and w % p == 0]
        bad = [p for p in sizes if not isinstance(p, int) or p < 1 or h % p or w % p]
        if bad or not sizes:
            raise ValueError(f"patch_sizes must be ints dividing the image size {(h, w)}, got {sizes}")
        if patch_size not in sizes:
            raise ValueError(f"patch_size must be one of {sizes}, got {patch_size!r}")
        self.patch_size = widgets.SelectionSlider(options=sizes, value=patch_size, description="patch size")
        self.patch = widgets.IntSlider(value=0, min=0, max=self.num_tokens - 1, description="token",
                                       continuous_update=False)
        self.patch_size.observe(self._size_changed, names="value")
        self.class_picker.observe(self._picker_class_changed, names="value")
        self._observe(self.index, self.patch)

    def _size_changed(self, _change: object) -> None:
        with self._batch():
            self.patch.max = self.num_tokens - 1  # lowering max also clamps the value

    def _controls(self) -> widgets.Widget:
        return widgets.HBox([widgets.VBox([self.class_picker, self.index]),
                             widgets.VBox([self.patch_size, self.patch])])

    @property
    def grid(self) -> tuple[int, int]:
        h, w = self.picker.images.shape[-2:]
        p = self.patch_size.value
        return h // p, w // p

    @property
    def num_tokens(self) -> int:
        gh, gw = self.grid
        return gh * gw

    def tokens(self) -> torch.Tensor:
        """The chosen image as a token sequence (N, P*P), in `patchify`'s order."""
        from einops import rearrange

        p = self.patch_size.value
        return rearrange(self.picker.image.float(), "(h p1) (w p2) -> (h w) (p1 p2)", p1=p, p2=p)

    def _draw(self, fig: Figure) -> None:
        p = self.patch_size.value
        gh, gw = self.grid
        n = self.num_tokens
        k = self.patch.value
        r, c = divmod(k, gw)
        img = self.picker.image.numpy()
        h, w = img.shape
        ax_img, ax_tok, ax_patch = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.0, 1.6, 0.6], "wspace": 0.35,
                                                                 "left": 0.06, "right": 0.98, "bottom": 0.16,
                                                                 "top": 0.84})
        ax_img.imshow(img, cmap="gray", interpolation="nearest")
        for i in range(1, gh):
            ax_img.axhline(i * p - 0.5, color="cyan", linewidth=0.6)
        for j in range(1, gw):
            ax_img.axvline(j * p - 0.5, color="cyan", linewidth=0.6)
        ax_img.add_patch(Rectangle((c * p - 0.5, r * p - 0.5), p, p, fill=False, edgecolor="red",
                                   linewidth=2, gid="highlight"))
        ax_img.set_title(f"{self.picker.class_names[self.picker.label]}: {gh}x{gw} patches of {p}x{p}")
        ax_img.set_xlabel("pixel column")
        ax_img.set_ylabel("pixel row")

        seq = self.tokens().T.numpy()  # (P*P, N): one column per token
        ax_tok.imshow(seq, cmap="gray", aspect="auto", interpolation="nearest", vmin=0, vmax=255)
        ax_tok.add_patch(Rectangle((k - 0.5, -0.5), 1, seq.shape[0], fill=False, edgecolor="red",
                                   linewidth=2, gid="highlight-token"))
        ax_tok.set_title(f"sequence: N = {n} tokens x {p * p} values\n"
                         f"attention: N² = {n * n:,} scores per head and layer", fontsize=9)
        ax_tok.set_xlabel("token (position in the sequence)")
        ax_tok.set_ylabel("pixel within the patch")

        ax_patch.imshow(img[r * p:(r + 1) * p, c * p:(c + 1) * p], cmap="gray", vmin=0, vmax=255,
                        interpolation="nearest")
        ax_patch.set_title(f"token {k}\n(row {r}, column {c})", fontsize=9)
        ax_patch.set_xticks([])
        ax_patch.set_yticks([])


# ----------------------------------------------------------------------------------------------
def _position_info(name: str, model: nn.Module) -> tuple[torch.Tensor, tuple[int, int], int]:
    pos = getattr(model, "pos_embed", None)
    grid = getattr(model, "grid_size", None)
    prefix = getattr(model, "num_prefix_tokens", 0)
    if not isinstance(pos, torch.Tensor) or grid is None:
        raise ValueError(f"model {name!r} has no position embedding to show (pos_embed is {pos!r}); "
                         "give models with learned or sin-cos position embeddings")
    return pos, tuple(grid), int(prefix)


class PositionEmbeddingExplorer(_Explorer):
    """Cosine similarity between position embeddings (the ViT paper's Figure 7, centre).

    Choose a model (e.g. untrained vs trained) and a patch (sliders, or click a button in the
    patch grid): the left panel shows that patch's similarity with every patch, the right panel
    the full grid of such maps with the chosen tile outlined.

    Args:
        models: {name: model} (each with `.pos_embed`, `.grid_size`, `.num_prefix_tokens`), or one model.
    """

    figsize = (10.0, 4.2)
    max_buttons = 16  # grids larger than this per side get sliders only

    def __init__(self, models: dict[str, nn.Module] | nn.Module) -> None:
        super().__init__()
        if isinstance(models, nn.Module):
            models = {"model": models}
        if not isinstance(models, dict) or not models:
            raise ValueError(f"models must be a non-empty dict {{name: model}} or a model, got {models!r}")
        self.similarities: dict[str, torch.Tensor] = {}
        for name, model in models.items():
            pos, grid, prefix = _position_info(name, model)
            self.similarities[name] = position.position_similarity(pos, grid, prefix)  # (gh, gw, gh, gw)
        self.model_picker = widgets.Dropdown(options=list(models), description="model")
        gh, gw = self.grid
        self.row = widgets.IntSlider(value=gh // 2, min=0, max=gh - 1, description="patch row")
        self.col = widgets.IntSlider(value=gw // 2, min=0, max=gw - 1, description="patch column")
        self.buttons: list[list[widgets.Button]] = []
        self.model_picker.observe(self._model_changed, names="value")
        self._observe(self.row, self.col)

    @property
    def grid(self) -> tuple[int, int]:
        sim = self.similarities[self.model_picker.value]
        return int(sim.shape[0]), int(sim.shape[1])

    @property
    def similarity(self) -> torch.Tensor:
        """The chosen patch's similarity map (gh, gw) for the chosen model."""
        return self.similarities[self.model_picker.value][self.row.value, self.col.value]

    def _model_changed(self, _change: object) -> None:
        gh, gw = self.grid
        with self._batch():
            self.row.max, self.col.max = gh - 1, gw - 1  # lowering max also clamps the value

    def choose(self, row: int, col: int) -> None:
        """Select patch (row, col), as a click on the patch grid does."""
        gh, gw = self.grid
        if not (0 <= row < gh and 0 <= col < gw):
            raise ValueError(f"(row, col) must be inside the {gh}x{gw} grid, got {(row, col)}")
        with self._batch():
            self.row.value, self.col.value = row, col

    def _controls(self) -> widgets.Widget:
        gh, gw = max(s.shape[0] for s in self.similarities.values()), max(s.shape[1] for s in self.similarities.values())
        parts: list[widgets.Widget] = [widgets.VBox([self.model_picker, self.row, self.col])]
        if max(gh, gw) <= self.max_buttons:
            self.buttons = []
            for i in range(gh):
                row = []
                for j in range(gw):
                    b = widgets.Button(description="", tooltip=f"patch ({i}, {j})",
                                       layout=widgets.Layout(width="26px", height="22px", padding="0"))
                    b.on_click(lambda _b, i=i, j=j: self.choose(min(i, self.grid[0] - 1), min(j, self.grid[1] - 1)))
                    row.append(b)
                self.buttons.append(row)
            parts.append(widgets.VBox([widgets.Label("click a patch:"),
                                       widgets.GridBox([b for r in self.buttons for b in r],
                                                       layout=widgets.Layout(
                                                           grid_template_columns=f"repeat({gw}, 28px)"))]))
        return widgets.HBox(parts)

    def _draw(self, fig: Figure) -> None:
        name = self.model_picker.value
        sim = self.similarities[name]
        r, c = self.row.value, self.col.value
        ax_one, ax_all = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25], "wspace": 0.3,
                                                          "left": 0.07, "right": 0.95, "bottom": 0.12,
                                                          "top": 0.86})
        im = ax_one.imshow(sim[r, c].numpy(), cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
        ax_one.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2,
                                   gid="highlight"))
        ax_one.set_title(f"{name}: similarity of patch ({r}, {c})\nwith every patch")
        ax_one.set_xticks(range(sim.shape[1]))
        ax_one.set_yticks(range(sim.shape[0]))
        ax_one.set_xlabel("patch column")
        ax_one.set_ylabel("patch row")
        fig.colorbar(im, ax=ax_one, fraction=0.046, pad=0.04, label="Cosine similarity")
        plots.plot_position_similarity(sim, title=f"{name}: all patches", ax=ax_all, highlight=(r, c))


# ----------------------------------------------------------------------------------------------
class AttentionExplorer(_Explorer):
    """Attention maps of a ViT on one image, per layer, head and query; or attention rollout.

    The attention of every layer is captured once per image (one forward pass through the
    probes, `capture.capture_attention`) and cached, so moving the layer / head / query controls
    only slices tensors and redraws.

    Query choices: the class token (models with one), the mean over all query tokens (what a
    mean-pooled model's output averages over), or one patch. The map shows that query's weights on
    the patches (the class token's column is left out); the colour scale runs from 0 to the map's
    largest weight, so a near-uniform map looks flat rather than exaggerated.

    Args:
        model: a ViT (eval mode is used for the forward passes).
        images, labels: uint8 (N, H, W) and (N,); default: the test split of `load_data()`.
        class_names: one name per label.
    """

    figsize = (11.0, 3.6)

    def __init__(self, model: nn.Module, images: torch.Tensor | None = None,
                 labels: torch.Tensor | None = None, class_names: Sequence[str] = CLASS_NAMES) -> None:
        super().__init__()
        if not capture.attention_modules(model):
            raise ValueError(f"model must be a ViT whose attentions carry probes, got a {type(model).__name__}")
        grid = getattr(model, "grid_size", None)
        if grid is None:
            raise ValueError("model must have a `.grid_size` (patch grid), like vitcourse.models.vit.ViT")
        if images is None:
            images, labels = _test_images()
        self.model = model
        self.grid_size = (int(grid[0]), int(grid[1]))
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 0))
        self.picker = _ImagePicker(images, labels, class_names)
        self.class_picker, self.index = self.picker.class_picker, self.picker.index
        self._cache: dict[int, tuple[list[torch.Tensor], torch.Tensor]] = {}
        layers = len(capture.attention_modules(model))
        heads = int(getattr(capture.attention_modules(model)[0], "heads", 1))
        self.layer = widgets.Dropdown(options=[(f"layer {i + 1}", i) for i in range(layers)], value=0,
                                      description="layer")
        self.head = widgets.Dropdown(options=[("mean of heads", "mean")] + [(f"head {h + 1}", h) for h in range(heads)],
                                     value="mean", description="head")
        gh, gw = self.grid_size
        first = [("class token", "cls")] if self.num_prefix_tokens else []
        patches = [(f"patch ({i}, {j})", i * gw + j) for i in range(gh) for j in range(gw)]
        self.query = widgets.Dropdown(options=first + [("mean over queries", "mean")] + patches,
                                      value=first[0][1] if first else "mean", description="query")
        self.rollout = widgets.ToggleButton(value=False, description="attention rollout",
                                            tooltip="all layers combined (Abnar & Zuidema 2020)")
        self.rollout.observe(self._rollout_changed, names="value")
        self.class_picker.observe(self._picker_class_changed, names="value")
        self._observe(self.index, self.layer, self.head, self.query, self.rollout)

    def _rollout_changed(self, change: dict) -> None:
        for c in (self.layer, self.head, self.query):
            c.disabled = bool(change["new"])

    def _controls(self) -> widgets.Widget:
        return widgets.HBox([widgets.VBox([self.class_picker, self.index]),
                             widgets.VBox([self.layer, self.head]),
                             widgets.VBox([self.query, self.rollout])])

    def _captured(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        pos = self.picker.position
        if pos not in self._cache:
            # One image is too small to share between threads: on a busy 2-core machine a 2-thread
            # forward pass took 0.2-1.3 s (threads waiting on each other), a 1-thread one 15 ms.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                atts, logits = capture.capture_attention(self.model, self.picker.image[None], return_logits=True)
            finally:
                torch.set_num_threads(threads)
            self._cache[pos] = ([a[0] for a in atts], logits[0].softmax(-1))  # per layer (H, N, N); (classes,)
        return self._cache[pos]

    @property
    def probabilities(self) -> torch.Tensor:
        """Class probabilities (classes,) for the chosen image."""
        return self._captured()[1]

    def attention_map(self) -> torch.Tensor:
        """The map shown for the current controls: (gh, gw) weights over the patches."""
        atts, _ = self._captured()
        gh, gw = self.grid_size
        p = self.num_prefix_tokens
        if self.rollout.value:
            return rollout.attention_rollout([a[None] for a in atts], num_prefix_tokens=p, grid=(gh, gw))[0]
        a = atts[self.layer.value]  # (H, N, N)
        a = a.mean(0) if self.head.value == "mean" else a[self.head.value]  # (N, N)
        q = self.query.value
        if q == "cls":
            row = a[0]
        elif q == "mean":
            row = a.mean(0)
        else:
            row = a[p + q]
        return row[p:].reshape(gh, gw)  # patches only

    def _draw(self, fig: Figure) -> None:
        image = self.picker.image
        probs = self.probabilities
        pred = int(probs.argmax())
        names = self.picker.class_names
        truth = self.picker.label
        amap = self.attention_map()
        gh, gw = self.grid_size
        h, w = image.shape
        ph, pw = h // gh, w // gw
        ax_img, ax_map, ax_prob = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1.2, 1.1], "wspace": 0.75,
                                                                   "left": 0.01, "right": 0.97, "bottom": 0.14,
                                                                   "top": 0.85})
        ax_img.imshow(image.numpy(), cmap="gray", interpolation="nearest")
        verdict = "correct" if pred == truth else "wrong"
        ax_img.set_title(f"true: {names[truth]}\npredicted: {names[pred]} ({100 * float(probs[pred]):.0f}%, "
                         f"{verdict})", fontsize=9)
        ax_img.set_xticks([])
        ax_img.set_yticks([])

        ax_map.imshow(image.numpy(), cmap="gray", interpolation="nearest")
        shown = plots.upsample_map(amap, (h, w))
        im = ax_map.imshow(shown.numpy(), cmap="inferno", alpha=0.6, vmin=0,
                           vmax=max(float(amap.max()), 1e-12), interpolation="nearest", gid="attention")
        fig.colorbar(im, ax=ax_map, fraction=0.046, pad=0.04, label="attention weight")
        if self.rollout.value:
            title = f"attention rollout ({len(self._captured()[0])} layers)"
        else:
            head = "mean of heads" if self.head.value == "mean" else f"head {self.head.value + 1}"
            q = self.query.value
            qname = {"cls": "class token", "mean": "mean over queries"}.get(q) if isinstance(q, str) else None
            if qname is None:
                r, c = divmod(q, gw)
                qname = f"patch ({r}, {c})"
                ax_map.add_patch(Rectangle((c * pw - 0.5, r * ph - 0.5), pw, ph, fill=False, edgecolor="cyan",
                                           linewidth=2, gid="query"))
            title = f"layer {self.layer.value + 1}, {head}\nquery: {qname}"
        ax_map.set_title(title, fontsize=9)
        ax_map.set_xticks([])
        ax_map.set_yticks([])

        colours = ["tab:green" if i == truth else "tab:red" if i == pred else "tab:grey" for i in range(len(probs))]
        ax_prob.barh(range(len(probs)), probs.numpy(), color=colours)
        ax_prob.set_yticks(range(len(probs)), [names[i] if i < len(names) else str(i) for i in range(len(probs))],
                           fontsize=8)
        ax_prob.invert_yaxis()
        ax_prob.set_xlim(0, 1)
        ax_prob.set_xlabel("probability")
        ax_prob.set_title("prediction (green: true class)", fontsize=9)


# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """One torch thread within the block: one image is too small to share between threads (see
    `AttentionExplorer._captured`: 15 ms on one thread, up to a second on two busy ones)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class CorruptionExplorer(_Explorer):
    """One test image under one corruption at one strength, seen by a ViT and a CNN side by side.

    Panels: the corrupted image with both models' predictions; the ViT's attention rollout on the
    corrupted image; both models' class probabilities. The corruptions and their strengths are
    chapter 12's (`vitcourse.analysis.corruption_suite`, what `python -m vitcourse robustness`
    measures). For an attack (FGSM, PGD) the `target` control says whose gradient makes the
    image: the other model then shows how well the attack transfers.

    Each state (image, corruption, strength, target) is computed once, with one forward pass of
    each model (the ViT's through `capture_attention`, which also gives its logits) after the
    corruption (an attack adds its own passes through the target), then cached: coming back to a
    state only redraws. Random corruptions are drawn from a generator seeded with `seed`, so a
    state always shows the same draw.

    Args:
        vit: a ViT whose attentions carry probes (e.g. `load_pretrained("vit_fmnist")`).
        cnn: a classifier of normalised images (e.g. `load_pretrained("resnet_fmnist")`).
        images, labels: uint8 (N, H, W) and (N,); default: the test split of `load_data()`.
        class_names: one name per label.
        names: what to call the two models in the figure.
        corruption: the starting corruption (a name in `corruption_suite.ALL`).
        seed: the random corruptions' seed.
    """

    figsize = (12.0, 4.0)

    def __init__(self, vit: nn.Module, cnn: nn.Module, images: torch.Tensor | None = None,
                 labels: torch.Tensor | None = None, class_names: Sequence[str] = CLASS_NAMES,
                 names: tuple[str, str] = ("ViT", "ResNet"), corruption: str = "patch_drop_random_7",
                 seed: int = 0) -> None:
        super().__init__()
        grid = getattr(vit, "grid_size", None)  # the patch grid the rollout is drawn on
        if not capture.attention_modules(vit) or grid is None:
            raise ValueError("vit must be a ViT with attention probes and a `.grid_size`, like "
                             f"vitcourse.models.vit.ViT; got a {type(vit).__name__}")
        if not isinstance(cnn, nn.Module):
            raise ValueError(f"cnn must be an nn.Module classifier, got {type(cnn).__name__}")
        corruption_suite.get_corruption(corruption)
        if images is None:
            images, labels = _test_images()
        self.vit, self.cnn, self.names, self.seed = vit, cnn, tuple(names), seed
        self.grid_size = (int(grid[0]), int(grid[1]))
        self.num_prefix_tokens = int(getattr(vit, "num_prefix_tokens", 0))
        self.picker = _ImagePicker(images, labels, class_names)
        self.class_picker, self.index = self.picker.class_picker, self.picker.index
        self._cache: dict[tuple, dict[str, torch.Tensor]] = {}
        self.evaluations = 0  # states computed (each: one pass of each model)
        self.corruption = widgets.Dropdown(options=[(c.title, c.name) for c in corruption_suite.ALL.values()],
                                           value=corruption, description="corruption")
        self.strength = widgets.SelectionSlider(options=self._strength_options(), description="strength",
                                                continuous_update=False)
        self.strength.value = self._default_strength()
        self.target = widgets.Dropdown(options=[(f"attack the {self.names[0]}", "vit"),
                                                (f"attack the {self.names[1]}", "cnn")],
                                       value="vit", description="attack", disabled=not self.spec.attack)
        self.corruption.observe(self._corruption_changed, names="value")
        self.class_picker.observe(self._picker_class_changed, names="value")
        self._observe(self.index, self.strength, self.target)

    @property
    def spec(self) -> corruption_suite.Corruption:
        return corruption_suite.ALL[self.corruption.value]

    def _strength_options(self) -> list[tuple[str, float]]:
        return [(f"{s:g}" + (" (clean)" if s == self.spec.clean else ""), float(s)) for s in self.spec.strengths]

    def _default_strength(self) -> float:
        """A middle strength, so a new corruption shows something."""
        strengths = self.spec.strengths
        return float(strengths[min(2, len(strengths) - 1)])

    def _corruption_changed(self, _change: object) -> None:
        with self._batch():
            self.strength.options = self._strength_options()
            self.strength.value = self._default_strength()
            self.target.disabled = not self.spec.attack

    def _controls(self) -> widgets.Widget:
        return widgets.HBox([widgets.VBox([self.class_picker, self.index]),
                             widgets.VBox([self.corruption, self.strength]), widgets.VBox([self.target])])

    def _state(self) -> dict[str, torch.Tensor]:
        spec, strength = self.spec, float(self.strength.value)
        key = (self.picker.position, spec.name, strength, self.target.value if spec.attack else None)
        if key not in self._cache:
            image = self.picker.image[None]  # (1, H, W) uint8
            generator = torch.Generator().manual_seed(self.seed)
            with _single_thread():
                if spec.attack:
                    model = self.vit if self.target.value == "vit" else self.cnn
                    pixels = spec.apply(model, image, torch.tensor([self.picker.label]), strength, generator)
                else:
                    pixels = spec.apply(image, strength, generator).float() / 255.0  # (1, H, W) in [0, 1]
                atts, vit_logits = capture.capture_attention(self.vit, pixels_to_input(self.vit, pixels),
                                                             return_logits=True)
                cnn_input = capture.prepare_images(self.cnn, pixels_to_input(self.cnn, pixels))  # on its device
                with torch.no_grad(), eval_mode(self.cnn):
                    cnn_logits = self.cnn(cnn_input).float().cpu()
            amap = rollout.attention_rollout(atts, num_prefix_tokens=self.num_prefix_tokens, grid=self.grid_size)
            self._cache[key] = {"pixels": pixels[0], "vit": vit_logits[0].softmax(-1),
                                "cnn": cnn_logits[0].softmax(-1), "rollout": amap[0]}
            self.evaluations += 1
        return self._cache[key]

    @property
    def corrupted(self) -> torch.Tensor:
        """The image the models see, float pixels (H, W) in [0, 1]."""
        return self._state()["pixels"]

    @property
    def vit_probabilities(self) -> torch.Tensor:
        """The ViT's class probabilities (classes,) on the corrupted image."""
        return self._state()["vit"]

    @property
    def cnn_probabilities(self) -> torch.Tensor:
        """The CNN's class probabilities (classes,) on the corrupted image."""
        return self._state()["cnn"]

    def rollout_map(self) -> torch.Tensor:
        """The ViT's attention rollout (gh, gw) on the corrupted image."""
        return self._state()["rollout"]

    def _draw(self, fig: Figure) -> None:
        state, spec = self._state(), self.spec
        names, truth = self.picker.class_names, self.picker.label
        label = lambda i: names[i] if i < len(names) else str(i)  # noqa: E731
        probs = {self.names[0]: state["vit"], self.names[1]: state["cnn"]}
        image = state["pixels"]
        h, w = image.shape
        ax_img, ax_map, ax_prob = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1.2, 1.4], "wspace": 0.7,
                                                                   "left": 0.01, "right": 0.97, "bottom": 0.14,
                                                                   "top": 0.78})
        strength = self.strength.value
        against = f", against the {self.names[0 if self.target.value == 'vit' else 1]}" if spec.attack else ""
        fig.suptitle(f"{spec.title}: {spec.unit} = {strength:g}{' (clean)' if strength == spec.clean else ''}"
                     f"{against}", fontsize=10)
        ax_img.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        preds = [f"{name}: {label(int(p.argmax()))} ({100 * float(p.max()):.0f}%)" for name, p in probs.items()]
        ax_img.set_title("\n".join([f"true: {label(truth)}", *preds]), fontsize=9)
        ax_img.set_xticks([])
        ax_img.set_yticks([])

        amap = state["rollout"]
        ax_map.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        im = ax_map.imshow(plots.upsample_map(amap, (h, w)).numpy(), cmap="inferno", alpha=0.6, vmin=0,
                           vmax=max(float(amap.max()), 1e-12), interpolation="nearest", gid="rollout")
        fig.colorbar(im, ax=ax_map, fraction=0.046, pad=0.04, label="rollout weight")
        ax_map.set_title(f"{self.names[0]}'s attention rollout\non the corrupted image", fontsize=9)
        ax_map.set_xticks([])
        ax_map.set_yticks([])

        classes = range(len(state["vit"]))
        for k, (name, p) in enumerate(probs.items()):
            ax_prob.barh([i + (k - 0.5) * 0.4 for i in classes], p.numpy(), height=0.4, label=name,
                         color=("tab:blue", "tab:orange")[k])
        ax_prob.set_yticks(list(classes), [label(i) + (" (true)" if i == truth else "") for i in classes], fontsize=8)
        ax_prob.invert_yaxis()
        ax_prob.set_xlim(0, 1)
        ax_prob.set_xlabel("probability")
        ax_prob.set_title("both models' predictions", fontsize=9)
        ax_prob.legend(fontsize=8, loc="lower right")
