"""MAE pre-training: a resumed run (after an epoch, or interrupted mid-epoch) ends with exactly the
weights of a run never stopped; the CLI refuses bad options with the option named."""
from __future__ import annotations

import pytest
import torch

from vitcourse.cli import main as cli_main
from vitcourse.models.mae import MAE, MAEConfig
from vitcourse.training import pretrain as pretrain_module
from vitcourse.training.pretrain import PretrainConfig, pretrain


def tiny_mae() -> MAE:
    torch.manual_seed(0)
    return MAE(MAEConfig(dim=16, depth=1, heads=2, mlp_dim=32, decoder_dim=16, decoder_depth=1,
                         decoder_mlp_dim=16))


def images(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


CONFIG = dict(batch_size=16, eval_images=16, lr=1e-3)


def weights(model: MAE) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


class StopAfter:
    """Stands in for Ctrl-C: `requested` turns True after `n` steps."""
    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    @property
    def requested(self) -> bool:
        self.calls += 1
        return self.calls == self.n


@pytest.mark.parametrize("stop_after", [2, 4, 5])  # mid-epoch 1, its last step, mid-epoch 2 (4 steps an epoch)
def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch, stop_after):
    train, held_out = images(64, 0), images(16, 1)
    config = PretrainConfig(epochs=2, **CONFIG)
    straight = pretrain(tiny_mae(), train, held_out, config, device="cpu", progress=False)
    monkeypatch.setattr(pretrain_module, "StopOnInterrupt", StopAfter(stop_after))
    stopped = pretrain(tiny_mae(), train, held_out, config, device="cpu", checkpoint_dir=tmp_path, progress=False)
    assert stopped.interrupted and (tmp_path / "last.pt").is_file()
    monkeypatch.undo()
    resumed = pretrain(tiny_mae(), train, held_out, config, device="cpu", checkpoint_dir=tmp_path,
                       resume=True, progress=False)
    assert not resumed.interrupted and len(resumed.history) == 2
    for k, v in weights(straight.model).items():
        assert torch.equal(v, weights(resumed.model)[k]), k
    assert resumed.history[-1]["train_loss"] == pytest.approx(straight.history[-1]["train_loss"])


def test_resume_refuses_another_configuration(tmp_path):
    train, held_out = images(32, 0), images(16, 1)
    pretrain(tiny_mae(), train, held_out, PretrainConfig(epochs=1, **CONFIG), device="cpu",
             checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="lr"):
        pretrain(tiny_mae(), train, held_out, PretrainConfig(epochs=2, batch_size=16, eval_images=16, lr=5e-3),
                 device="cpu", checkpoint_dir=tmp_path, resume=True, progress=False)


def test_pretrain_rejects_labels_or_floats_instead_of_raw_images():
    with pytest.raises(ValueError, match="train_images must be a uint8"):
        pretrain(tiny_mae(), torch.rand(8, 28, 28), images(8, 1), PretrainConfig(epochs=1, **CONFIG), progress=False)


@pytest.mark.parametrize("argv, message", [
    (["pretrain", "--mask-ratio", "1.0"], "--mask-ratio"),
    (["pretrain", "--epochs", "0"], "--epochs"),
    (["pretrain", "--resume"], "--resume"),
])
def test_the_command_names_the_bad_option(capsys, argv, message):
    assert cli_main(argv) == 2
    assert message in capsys.readouterr().err
