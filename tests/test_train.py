"""The training loop: hyper-parameter checks, schedule, weight-decay groups, precision choice,
learning, history files, evaluation, NaN stop, Ctrl-C and exact resume."""
from __future__ import annotations

import json
import os
import signal

import pytest
import torch
import torch.nn as nn

from vitcourse.training.checkpoint import load_checkpoint, load_model
from vitcourse.data import load_data
from vitcourse.models import create_model
from vitcourse.training.precision import grad_scaler, resolve_compile, resolve_precision
from vitcourse.training.schedule import lr_curve, make_scheduler, warmup_cosine, warmup_steps_for
from vitcourse.settings import supports_bf16
from vitcourse.training.loop import (TrainConfig, TrainingDiverged, evaluate, fit, input_size, param_groups,
                             predict)


def tiny_vit(**kw) -> nn.Module:
    torch.manual_seed(kw.pop("seed", 0))
    return create_model("vit_fmnist", dim=32, depth=1, heads=2, mlp_dim=64, **kw)


@pytest.fixture(scope="module")
def data():
    return load_data(train_size=512, test_size=256)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs (max |diff| {(a[k] - b[k]).abs().max()})"


# ------------------------------------------------------------------ config, schedule, groups

@pytest.mark.parametrize("field,value", [("epochs", 0), ("batch_size", -1), ("lr", 0.0),
                                         ("precision", "fp8"), ("warmup_frac", 1.0),
                                         ("optimizer", "adam"), ("compile", "yes")])
def test_train_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_warmup_is_linear_then_cosine_decays_to_zero():
    total, warm = 100, 10
    lrs = [warmup_cosine(s, total, warm) for s in range(total)]
    assert lrs[:warm] == pytest.approx([(s + 1) / warm for s in range(warm)])
    assert lrs[warm] == pytest.approx(1.0)
    after = lrs[warm:]
    assert all(a >= b for a, b in zip(after, after[1:])), "cosine part must not increase"
    assert after[len(after) // 2] == pytest.approx(0.5, abs=0.02)  # half-way down the cosine
    assert lrs[-1] < 0.01
    assert warmup_steps_for(100, 0.05) == 5 and warmup_steps_for(100, 0.0) == 0


def test_scheduler_steps_the_optimizer_along_lr_curve():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.5)
    sched = make_scheduler(opt, total_steps=40, warmup_frac=0.1)
    seen = []
    for _ in range(40):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx(lr_curve(0.5, 40, 0.1))


def test_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine(0, 10, 11)
    with pytest.raises(ValueError, match="warmup_frac"):
        warmup_steps_for(10, 1.5)


def test_no_weight_decay_on_norms_biases_and_embeddings():
    model = create_model("vit_fmnist", pool="cls", depth=1)
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {"pos_embed", "cls_token", "norm.weight", "norm.bias", "head.bias"} <= kept
    assert {"head.weight", "blocks.0.mlp.fc1.weight", "blocks.0.attn.qkv.weight"} <= decayed
    assert len(decayed) + len(kept) == len(list(model.parameters()))


def test_precision_follows_the_device():
    assert resolve_precision("auto", "cpu") == ("bf16" if supports_bf16("cpu") else "fp32")
    assert resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("half", "cpu")
    assert resolve_compile("auto", "cpu") is False and resolve_compile(True, "cpu") is True
    assert not grad_scaler("fp32", "cpu").is_enabled()


def test_input_size_comes_from_the_model_config():
    assert input_size(create_model("d2l_vit", depth=1)) == 96
    assert input_size(tiny_vit()) is None  # 28x28: no resize
    assert input_size(nn.Linear(2, 2), 64) == 64
    assert input_size(create_model("d2l_vit", depth=1, image_size=(64, 64))) == 64
    with pytest.raises(ValueError, match="image_size"):
        input_size(create_model("d2l_vit", depth=1, image_size=(64, 32)))


# ------------------------------------------------------------------ the loop

@pytest.mark.slow
def test_fit_learns_and_writes_history(data, tmp_path):
    model = tiny_vit()
    result = fit(model, data, TrainConfig(epochs=3, batch_size=32, lr=1e-2), checkpoint_dir=tmp_path,
                 progress=False)
    h = result.history
    assert [e["epoch"] for e in h] == [1, 2, 3]
    assert set(h[0]) == {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr",
                         "images_per_s", "seconds"}
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert result.test_accuracy == h[-1]["test_acc"] > 0.3  # chance is 0.1
    assert result.images_per_s > 0 and result.wall_time_s > 0 and result.model is model
    assert json.loads((tmp_path / "history.json").read_text()) == h
    assert (tmp_path / "history.csv").read_text().splitlines()[0].startswith("epoch,train_loss")
    # the checkpoint rebuilds the same model
    again = load_model(tmp_path / "last.pt")
    x = torch.randn(4, 1, 28, 28)
    model.eval()
    assert torch.equal(again(x), model(x))


def test_fit_trains_any_module_classifier(data):
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    result = fit(model, data, TrainConfig(epochs=2, batch_size=64, precision="fp32"), progress=False)
    assert result.test_accuracy > 0.4


def test_fit_rejects_wrong_arguments(data):
    with pytest.raises(ValueError, match="data"):
        fit(tiny_vit(), (data.train_images, data.train_labels), TrainConfig(epochs=1))
    with pytest.raises(ValueError, match="checkpoint_dir"):
        fit(tiny_vit(), data, TrainConfig(epochs=1), resume=True)


def test_evaluate_and_predict_agree_with_a_manual_count(data):
    model = tiny_vit()
    logits = predict(model, data.test_images[:100])
    assert logits.shape == (100, 10) and logits.dtype == torch.float32
    manual = (logits.argmax(-1) == data.test_labels[:100]).float().mean().item()
    out = evaluate(model, data.test_images[:100], data.test_labels[:100], batch_size=33)
    assert out["accuracy"] == pytest.approx(manual)
    assert out["loss"] == pytest.approx(nn.functional.cross_entropy(logits, data.test_labels[:100]).item(), rel=1e-5)
    with pytest.raises(ValueError, match="labels"):
        evaluate(model, data.test_images[:10], data.test_labels[:9])
    with pytest.raises(ValueError, match="batch_size"):
        predict(model, data.test_images[:10], batch_size=0)


class Poisoned(nn.Module):
    """Wraps a model; from the `after`-th training call on, its output is NaN."""

    def __init__(self, inner: nn.Module, after: int) -> None:
        super().__init__()
        self.inner, self.after, self.calls = inner, after, 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                out = out * float("nan")
        return out


@pytest.mark.slow
def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(data, tmp_path):
    steps = 512 // 64
    model = Poisoned(tiny_vit(), after=steps + 3)  # NaN early in epoch 2
    with pytest.raises(TrainingDiverged, match="nan.*epoch 2.*last good checkpoint"):
        fit(model, data, TrainConfig(epochs=3, batch_size=64), checkpoint_dir=tmp_path, progress=False)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["step"] == 0 and len(ckpt["history"]) == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


class Interrupting(nn.Module):
    """Wraps a model; interrupts training at its `at`-th training call, by `how`."""

    def __init__(self, inner: nn.Module, at: int, how: str) -> None:
        super().__init__()
        self.inner, self.at, self.how, self.calls = inner, at, how, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                if self.how == "raise":
                    raise KeyboardInterrupt
                os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C / Jupyter's interrupt sends
        return self.inner(x)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigint", "raise"])
def test_interrupt_writes_a_checkpoint_and_resume_ends_bit_for_bit_equal(data, tmp_path, how):
    # Every source of randomness on: dropout masks, random crops and flips, the batch order.
    config = TrainConfig(epochs=2, batch_size=64, seed=3, crop_padding=2)  # precision "auto": bf16 here
    reference = Interrupting(tiny_vit(dropout=0.1), at=-1, how=how)
    fit(reference, data, config, progress=False)

    stopped = Interrupting(tiny_vit(dropout=0.1), at=11, how=how)  # in epoch 2 (8 steps per epoch)
    result = fit(stopped, data, config, checkpoint_dir=tmp_path, progress=False)
    assert result.interrupted and len(result.history) == 1
    ckpt = load_checkpoint(tmp_path / "last.pt")
    # SIGINT is noticed after the step it arrived in; an exception aborts the step it is raised in
    assert (ckpt["epoch"], ckpt["step"]) == (1, 3 if how == "sigint" else 2)

    resumed = Interrupting(tiny_vit(seed=99, dropout=0.1), at=-1, how=how)  # other init: resume must load all
    result = fit(resumed, data, config, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert not result.interrupted and len(result.history) == 2
    assert_same_weights(weights(resumed), weights(reference))


def test_resume_refuses_a_changed_config(data, tmp_path):
    fit(tiny_vit(), data, TrainConfig(epochs=1, batch_size=64), checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="lr"):
        fit(tiny_vit(), data, TrainConfig(epochs=2, batch_size=64, lr=1e-2), checkpoint_dir=tmp_path,
            resume=True, progress=False)


# ------------------------------------------------------------------ fp16 + GradScaler (Colab's T4)

@pytest.mark.parametrize("flags, capability, expected", [
    ({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "AVX512", "bf16"),  # AMX: bf16 doubled training speed
    ({"avx512f", "avx512_bf16"}, "AVX512", "fp32"),  # AVX512-BF16 alone: bf16 was 10-25% slower
    ({"avx2"}, "AVX2", "fp32"),
    ({"avx512f", "amx_bf16"}, "AVX2", "fp32"),  # a torch build without AVX-512 kernels
])
def test_cpu_precision_is_bf16_only_where_the_cpu_has_amx(monkeypatch, flags, capability, expected):
    from vitcourse import settings

    monkeypatch.setattr(settings, "cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert supports_bf16("cpu") is (expected == "bf16")
    assert resolve_precision("auto", "cpu") == expected


def test_cpu_flags_are_whole_words_of_the_flags_line(tmp_path):
    from vitcourse import settings

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: A CPU with amx_bf16 in its name\nflags\t\t: fpu avx512_bf16 avx512f\n")
    assert settings.cpu_flags(str(cpuinfo)) == {"fpu", "avx512_bf16", "avx512f"}
    assert settings.cpu_flags(str(tmp_path / "missing")) == set()


@pytest.mark.parametrize("capability, expected", [((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_cuda_precision_follows_compute_capability(monkeypatch, capability, expected):
    # A T4 is compute capability 7.5: torch.cuda.is_bf16_supported() says True there (emulated
    # bf16), so "auto" must look at the capability itself to pick fp16 + a GradScaler.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert supports_bf16("cuda") is (expected == "bf16")
    assert resolve_precision("auto", "cuda") == expected
    assert resolve_precision("auto", "cuda:0") == expected


def test_fp16_step_scales_unscales_and_skips_overflow():
    """`train_step`'s fp16 branch (a T4's): scaled backward, unscaled clipping, skipped step on
    overflow with the scale halved, and a scaler state that survives a checkpoint round trip."""
    from vitcourse.training.loop import train_step
    from vitcourse.training.losses import TrainingLoss
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scheduler = make_scheduler(optimizer, total_steps=10, warmup_frac=0.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, enabled=True)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    criterion = TrainingLoss()

    before = weights(net)
    loss, logits = train_step(net, x, y, criterion, optimizer, scheduler, scaler, grad_clip=1.0,
                              precision="fp16", device=torch.device("cpu"))
    assert logits.dtype == torch.float16 and torch.isfinite(loss)
    assert scaler.get_scale() == 2.0 ** 10  # no overflow: the scale stays
    total_norm = torch.sqrt(sum((weights(net)[k] - before[k]).pow(2).sum() for k in before))
    assert 0 < total_norm <= 0.1 * 1.0 + 1e-4  # clipped on the *unscaled* gradient (lr * max norm)

    x_bad = x.clone()
    x_bad[0, 0, 0, 0] = float("inf")  # an overflowing batch: the step must be skipped
    kept = weights(net)
    train_step(net, x_bad, y, criterion, optimizer, scheduler, scaler, grad_clip=1.0,
               precision="fp16", device=torch.device("cpu"))
    assert_same_weights(kept, weights(net))
    assert scaler.get_scale() == 2.0 ** 9

    restored = torch.amp.GradScaler("cpu", enabled=True)
    restored.load_state_dict(scaler.state_dict())
    assert restored.get_scale() == 2.0 ** 9


def test_on_step_reports_every_step_with_the_loss_the_history_averages(data):
    seen: list[tuple[int, float]] = []
    config = TrainConfig(epochs=2, batch_size=128, precision="fp32")
    result = fit(tiny_vit(), data, config, progress=False, on_step=lambda s, loss: seen.append((s, loss)))
    steps = [s for s, _ in seen]
    per_epoch = -(-len(data.train_labels) // config.batch_size)  # ceil: the last batch may be short
    assert steps == list(range(1, 2 * per_epoch + 1))
    # each step's loss is its batch mean: the size-weighted mean over an epoch is the epoch's loss
    sizes = [min(config.batch_size, len(data.train_labels) - i * config.batch_size) for i in range(per_epoch)]
    for e in range(2):
        losses = [loss for _, loss in seen[e * per_epoch:(e + 1) * per_epoch]]
        mean = sum(n * l for n, l in zip(sizes, losses)) / sum(sizes)
        assert mean == pytest.approx(result.history[e]["train_loss"], rel=1e-5)
