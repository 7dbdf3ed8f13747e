"""A figure of the loss and accuracy curves that redraws itself while a notebook trains.

Inside a Jupyter kernel it draws into one display slot (an IPython display handle) and updates it
in place; anywhere else (a script, a terminal, a test) it does nothing at all.
"""
from __future__ import annotations

from typing import Any


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where a display handle can be updated in place)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class LivePlot:
    """Loss (train and test) and accuracy per epoch, redrawn after every `update`."""

    def __init__(self, title: str = "Training curves", enabled: bool | None = None) -> None:
        self.enabled = in_notebook() if enabled is None else enabled
        self.title = title
        self.fig = None
        self.handle = None

    def _create(self) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        self.fig, self.axes = plt.subplots(1, 2, figsize=(10, 3.5))
        self.fig.suptitle(self.title)
        plt.close(self.fig)  # shown through the handle only, not again at the end of the cell
        self.handle = display(self.fig, display_id=True)

    def update(self, history: list[dict[str, Any]]) -> None:
        """Redraw from the per-epoch history (dicts with epoch, train_loss, test_loss, ...)."""
        if not self.enabled or not history:
            return
        if self.fig is None:
            self._create()
        epochs = [h["epoch"] for h in history]
        ax_loss, ax_acc = self.axes
        from matplotlib.ticker import MaxNLocator

        for ax in self.axes:
            ax.clear()
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs, not 1.2, 1.4, ...
            ax.grid(alpha=0.3)
        ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
        ax_loss.plot(epochs, [h["test_loss"] for h in history], "o-", label="test")
        ax_loss.set(title="Loss", ylabel="cross-entropy")
        ax_acc.plot(epochs, [100 * h["train_acc"] for h in history], "o-", label="train")
        ax_acc.plot(epochs, [100 * h["test_acc"] for h in history], "o-", label="test")
        ax_acc.set(title="Accuracy", ylabel="accuracy (%)")
        for ax in self.axes:
            ax.legend()
        self.fig.tight_layout()
        if self.handle is not None:  # None when IPython has no frontend to show it in
            self.handle.update(self.fig)
