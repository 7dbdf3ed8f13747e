import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("VITCOURSE_FAST", "1")


@pytest.fixture(scope="session")
def fmnist():
    """The real Fashion-MNIST splits (full size), loaded once per test session."""
    from vitcourse.data import load_fashion_mnist

    return {"train": load_fashion_mnist("train"), "test": load_fashion_mnist("test")}
