"""Data parallel training under torchrun (gloo, 2 processes on the CPU) ends with the same weights
as one process at the same global batch, with dropout off; rank 0 alone writes files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from vitcourse.training import distributed

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from vitcourse.training import distributed
    from vitcourse.data import load_data
    from vitcourse.models import create_model
    import vitcourse.training.run_state as run_state
    from vitcourse.training.loop import TrainConfig, fit
    folder, out = sys.argv[1], sys.argv[2]

    def logged(fn):  # record which rank writes each file, in a file of that rank's own
        def wrapper(*args, **kwargs):
            with open(f"{folder}.writers.{distributed.rank()}", "a") as log:
                log.write(fn.__name__ + " ")
            return fn(*args, **kwargs)
        return wrapper
    run_state.save_checkpoint = logged(run_state.save_checkpoint)
    run_state.write_history = logged(run_state.write_history)
    data = load_data(train_size=256, test_size=100)
    torch.manual_seed(0)
    model = create_model("vit_fmnist", dim=32, depth=1, heads=2, mlp_dim=64, dropout=0.0)
    result = fit(model, data, TrainConfig(epochs=2, batch_size=64, precision="fp32"),
                 checkpoint_dir=folder, progress=False)
    if distributed.is_main():
        torch.save({"weights": model.state_dict(), "world": distributed.world_size()}, out)
    distributed.cleanup()
""")


def run(tmp_path: Path, name: str, nproc: int) -> dict:
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                 f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable])
    subprocess.run([*launcher, str(script), str(tmp_path / name), str(tmp_path / f"{name}.pt")],
                   env=env, cwd=REPO, check=True, timeout=600)
    return torch.load(tmp_path / f"{name}.pt")


@pytest.mark.slow
def test_two_ranks_end_with_the_weights_of_one_process(tmp_path):
    single = run(tmp_path, "single", 1)
    ddp = run(tmp_path, "ddp", 2)
    assert single["world"] == 1 and ddp["world"] == 2
    for k, v in single["weights"].items():
        assert torch.allclose(ddp["weights"][k], v, atol=2e-5, rtol=1e-4), \
            f"{k}: max |diff| {(ddp['weights'][k] - v).abs().max()}"
    # metrics are reduced over ranks: both runs report the same accuracy on the whole test set
    h1 = json.loads((tmp_path / "single" / "history.json").read_text())
    h2 = json.loads((tmp_path / "ddp" / "history.json").read_text())
    assert [h["test_acc"] for h in h1] == pytest.approx([h["test_acc"] for h in h2], abs=0.011)
    assert [h["train_loss"] for h in h1] == pytest.approx([h["train_loss"] for h in h2], rel=1e-4)
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["history.csv", "history.json", "last.pt"]
    # rank 0 alone wrote them: a checkpoint and the history after each of the 2 epochs
    writers = sorted(p.name for p in tmp_path.glob("ddp.writers.*"))
    assert writers == ["ddp.writers.0"], writers
    assert (tmp_path / "ddp.writers.0").read_text().split() == ["save_checkpoint", "write_history"] * 2


def test_single_process_helpers_are_identities():
    assert not distributed.is_distributed()
    assert distributed.rank() == 0 and distributed.world_size() == 1 and distributed.is_main()
    x = torch.arange(6)
    assert distributed.shard(x)[0] is x
    assert distributed.all_reduce_sum([1.0, 2.0]).tolist() == [1.0, 2.0]
    assert distributed.init_from_env("cpu") is False  # not under torchrun
