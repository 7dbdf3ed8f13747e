"""``python -m vitcourse bench``: speed and accuracy on this machine, side by side with D2L.

1. Training images/s in D2L's chapter configuration (96x96, patch 16, batch 128): D2L's own model
   (`vitcourse.models.d2l_vit`, fp32, SGD, as the book runs it) vs vitcourse's `d2l_vit` trained by
   `vitcourse.training.loop.fit` in its default settings; and the ratio.
2. Achieved FLOP/s of vitcourse's training step as a fraction of this machine's matmul peak,
   measured in the same run and the same precision (MFU).
3. Time to accuracy: chapter 13's best recipe (`small_data.BEST_VARIANT`), then the plain
   `vit_fmnist` as the reference row, each trained by `python -m vitcourse train` in a child
   process for as many epochs as fit the budget (10 minutes) at its probed speed (the ablation's
   own probe and plan, `experiments.budget`); the wall time to 90% test accuracy and the accuracy
   of the last epoch inside the budget. Then the shipped long-run model's card (chapter 13's
   60-minute run, if it is in ``data/checkpoints``) for the >= 95% goal, beside the course's ResNet
   trained by the same loop for the same 60 minutes (the long part's reference row, if it is in
   ``small_data_long.csv``).
4. Peak resident memory of the best recipe's training process.

``--quick`` runs parts 1 and 2 only; ``--json PATH`` writes the figures. Not a timed test: on a
shared machine the numbers move by 10% or more from run to run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ..cli_args import CommandError, output_file, positive_float, positive_int, train_subset
from ..models.d2l_vit import D2L_BATCH_SIZE, D2L_CONFIG, _d2l, build_d2l_vit, d2l_train_step
from ..data import TensorLoader, load_data
from ..models.registry import create_model
from ..training.checkpoint import PRETRAINED_DIR
from ..training.precision import resolve_precision
from ..training.loop import TrainConfig, fit
from .budget import BudgetedRun, machine, plan_epochs, probe_speed
from .small_data import BEST_VARIANT, LONG_REFERENCE, SHIPPED_VARIANT, STEPS, read_rows, recipe_run

KEYS = ("d2l_img_per_s", "vitcourse_img_per_s", "speedup", "mfu", "time_to_90_s", "acc_at_10_min",
        "reference_acc_at_10_min", "shipped_acc", "long_reference_acc")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="parts 1 and 2 only (under 3 minutes)")
    parser.add_argument("--json", type=output_file, default=None, help="write the figures to this JSON file")
    parser.add_argument("--steps", type=positive_int, default=None, help="timed training steps per model (part 1)")
    parser.add_argument("--batch-size", type=positive_int, default=D2L_BATCH_SIZE,
                        help="part 1's batch (D2L: 128)")
    parser.add_argument("--budget-min", type=positive_float, default=10.0, help="part 3's time budget in minutes")
    parser.add_argument("--train-size", type=train_subset, default=None, help="part 3 on a subset (for tests)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")


def matmul_peak(precision: str, device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of an n x n matmul in `precision` (fp32 / bf16 / fp16) on `device`."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = math.inf
    for _ in range(repeats + 1):  # the first call warms up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def train_flops_per_image(model: nn.Module, image_size: int) -> float:
    """FLOPs of forward + backward for one image (counted by PyTorch's FlopCounterMode)."""
    x = torch.randn(2, 1, image_size, image_size)
    y = torch.zeros(2, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def d2l_speed(data, steps: int, batch_size: int, device: torch.device | str = "cpu") -> float:
    """Images/s of D2L's model as the chapter runs it: fp32, SGD(lr=0.1), dropout 0.1."""
    torch.manual_seed(0)
    device = torch.device(device)
    model = build_d2l_vit().to(device)
    optimizer = model.configure_optimizers()
    loader = TensorLoader(data.train_images, data.train_labels, batch_size, image_size=D2L_CONFIG["img_size"],
                          device=device)
    batches = iter(loader)
    x, y = next(batches)
    d2l_train_step(model, optimizer, x, y)  # warm-up, untimed
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    n = 0
    for _, (x, y) in zip(range(steps), batches):
        d2l_train_step(model, optimizer, x, y)
        n += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # CUDA runs ahead of Python: wait for the last step
    return n / (time.perf_counter() - start)


def vitcourse_speed(data, steps: int, batch_size: int, device: torch.device) -> float:
    """Images/s of `d2l_vit` trained by `fit` with the default TrainConfig (bar the batch size)."""
    torch.manual_seed(0)
    model = create_model("d2l_vit")
    config = TrainConfig(epochs=1, batch_size=batch_size)
    warm = type(data)(data.train_images[:batch_size], data.train_labels[:batch_size],
                      data.test_images[:8], data.test_labels[:8])
    fit(model, warm, config, device=device, progress=False)  # warm-up, untimed
    timed = type(data)(data.train_images[:steps * batch_size], data.train_labels[:steps * batch_size],
                       data.test_images[:8], data.test_labels[:8])
    return fit(model, timed, config, device=device, progress=False).images_per_s


def train_arguments(run: BudgetedRun) -> list[str]:
    """The `python -m vitcourse train` flags that train `run`'s recipe step as `train_budgeted`
    does (its seed, no torch.compile, the TrainConfig overrides, the teacher); every TrainConfig
    field a recipe uses has a flag of the same name."""
    if run.model_overrides:
        raise ValueError(f"run: `vitcourse train` takes no model overrides, got {run.model_overrides!r}")
    return ["--model", run.model, "--seed", str(run.seed), "--compile", "off", *recipe_flags(run)]


def recipe_flags(run: BudgetedRun) -> list[str]:
    """The flags of `run`'s recipe options alone (TrainConfig overrides, teacher)."""
    flags: list[str] = []
    for key, value in run.train_overrides:
        flag = "--" + key.replace("_", "-")
        flags += [flag] if value is True else [flag, str(value)]
    return flags + (["--teacher", run.teacher] if run.teacher else [])


def time_to_accuracy(budget_s: float, speed_probe: float, train_size: int | None,
                     threads: int | None, arguments: tuple[str, ...] | list[str] = ("--model", "vit_fmnist"),
                     test_size: int = 10_000) -> dict[str, Any]:
    """Train a model (`arguments` for `vitcourse train`) in a child process for as many epochs as
    fit `budget_s` at `speed_probe` images/s (a cosine schedule needs its length up front; the
    plan is the ablation's `plan_epochs`); read its history and peak memory.

    The accuracy "within the budget" is that of the last epoch whose cumulative time (training +
    evaluation, from the history) is inside `budget_s`: if the probe over-estimated the speed and
    the run overshoots, the overshoot does not count.
    """
    epochs = plan_epochs(budget_s, speed_probe, train_size or 60_000, test_size)
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "vitcourse", "train", *arguments, "--epochs", str(epochs),
               "--out", out, "--no-progress"]
        if train_size:
            cmd += ["--train-size", str(train_size)]
        if threads:
            cmd += ["--threads", str(threads)]
        start = time.perf_counter()
        child = subprocess.Popen(cmd, env={**os.environ, "VITCOURSE_FAST": "0"})
        # wait4 gives this child's own resource usage (RUSAGE_CHILDREN would be the largest of
        # every child this process ever waited for, e.g. another test's under pytest).
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if child.returncode != 0:
            raise RuntimeError(f"the training run failed (exit {child.returncode}): {' '.join(cmd)}")
        history = json.loads((Path(out) / "history.json").read_text())
    return {"epochs": epochs, "wall_s": wall, **read_history(history, budget_s),
            "final_acc": history[-1]["test_acc"], "train_img_per_s": history[-1]["images_per_s"],
            "peak_rss_mb": usage.ru_maxrss / 1024}  # ru_maxrss is in KB on Linux


def read_history(history: list[dict[str, Any]], budget_s: float, target: float = 0.90) -> dict[str, Any]:
    """From a run's per-epoch history: the time at which test accuracy first reached `target`,
    and the accuracy of the last epoch finished within `budget_s` (cumulative epoch seconds)."""
    elapsed, time_to_target, within = 0.0, None, None
    for h in history:
        elapsed += h["seconds"]
        if time_to_target is None and h["test_acc"] >= target:
            time_to_target = elapsed
        if elapsed <= budget_s:
            within = h
    return {"train_s": elapsed, "time_to_90_s": time_to_target,
            "acc_within_budget": within["test_acc"] if within else None,
            "epochs_within_budget": within["epoch"] if within else 0}


def goals(out: dict[str, Any]) -> dict[str, bool | None]:
    """The issue's goals on a 2-core CPU, judged from the figures (None: that part did not run)."""
    def judge(key: str, ok) -> bool | None:
        return None if out.get(key) is None else bool(ok(out[key]))
    return {"speedup >= 3x": judge("speedup", lambda v: v >= 3),
            "93% within 10 min": judge("acc_at_10_min", lambda v: v >= 0.93),
            "shipped model >= 95%": judge("shipped_acc", lambda v: v >= 0.95),
            "plain ViT 92% within 10 min": judge("reference_acc_at_10_min", lambda v: v >= 0.92),
            "peak RSS < 2 GB": judge("peak_rss_mb", lambda v: v < 2048)}


def shipped_card(variant: str = SHIPPED_VARIANT) -> dict[str, Any] | None:
    """The card of chapter 13's shipped long-run model (None if it has not shipped yet): the model
    of the long part's shipped step, which may differ from the 10-minute BEST_VARIANT in its options."""
    path = PRETRAINED_DIR / f"{STEPS[variant][0]}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def long_reference_row(budget_s: float) -> dict[str, str] | None:
    """The long part's ResNet row at `budget_s` (the shipped card's budget): the yardstick the
    >= 95% goal is read beside (None if it has not run)."""
    rows = [r for r in read_rows() if r["experiment"] == "long" and r["variant"] == LONG_REFERENCE
            and float(r["budget_s"]) == budget_s]
    return rows[0] if rows else None


def main(args: argparse.Namespace) -> int:
    try:
        _d2l()  # part 1 runs D2L's own model: say how to install it before anything is measured
    except ImportError as exc:
        raise CommandError(f"bench needs D2L's package: {exc}") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu") if not torch.cuda.is_available() else torch.device("cuda")
    precision = resolve_precision("auto", device)
    steps = args.steps or (6 if args.quick else 20)
    data = load_data(fast=False, train_size=(steps + 1) * args.batch_size, test_size=1000)
    out: dict[str, Any] = {k: None for k in KEYS}
    # the machine's name, threads and precision: figures from a CPU with AMX and one without differ ~3x
    out.update(device=str(device), hardware=machine(), precision=precision, threads=torch.get_num_threads(),
               batch_size=args.batch_size, steps=steps)

    print(f"1. D2L configuration (96x96, patch 16, batch {args.batch_size}), training images/s on {device}")
    out["d2l_img_per_s"] = d2l_speed(data, steps, args.batch_size)
    out["vitcourse_img_per_s"] = vitcourse_speed(data, steps, args.batch_size, device)
    out["speedup"] = out["vitcourse_img_per_s"] / out["d2l_img_per_s"]
    print(f"   D2L (d2l.MultiHeadAttention + d2l.Classifier, fp32, SGD): {out['d2l_img_per_s']:8.1f}")
    print(f"   vitcourse d2l_vit via fit ({precision}, AdamW):            {out['vitcourse_img_per_s']:8.1f}")
    print(f"   speed-up: {out['speedup']:.2f}x (goal on a 2-core CPU: >= 3x)")

    print("2. Achieved FLOP/s of a training step vs this machine's matmul peak, same precision")
    flops = train_flops_per_image(create_model("d2l_vit"), D2L_CONFIG["img_size"])
    out["train_gflop_per_image"] = flops / 1e9
    out["peak_gflops"] = matmul_peak(precision, device) / 1e9
    out["peak_gflops_fp32"] = matmul_peak("fp32", device) / 1e9
    out["achieved_gflops"] = flops * out["vitcourse_img_per_s"] / 1e9
    out["mfu"] = out["achieved_gflops"] / out["peak_gflops"]
    out["d2l_mfu"] = flops * out["d2l_img_per_s"] / 1e9 / out["peak_gflops_fp32"]
    print(f"   {out['train_gflop_per_image']:.2f} GFLOP per image (forward + backward)")
    print(f"   vitcourse: {out['achieved_gflops']:.0f} GFLOP/s of a {precision} peak of "
          f"{out['peak_gflops']:.0f}: MFU {100 * out['mfu']:.1f}%")
    print(f"   D2L:       {flops * out['d2l_img_per_s'] / 1e9:.0f} GFLOP/s of an fp32 peak of "
          f"{out['peak_gflops_fp32']:.0f}: MFU {100 * out['d2l_mfu']:.1f}%")

    if not args.quick:
        budget = 60 * args.budget_min
        full = load_data(fast=False, train_size=args.train_size)
        part3 = [("best", recipe_run("bench", BEST_VARIANT, 0, budget)), ("reference", recipe_run("bench", "vit", 0, budget))]
        print(f"3. Time to accuracy within {args.budget_min:g} minutes on {len(full.train_labels):,} training images "
              f"(child processes; epochs planned from a speed probe, as chapter 13's ablation plans them)")
        for role, run in part3:
            probe = probe_speed(run, full, device=str(device))
            result = time_to_accuracy(budget, probe, args.train_size, args.threads, train_arguments(run))
            prefix = "" if role == "best" else "reference_"
            out[f"{prefix}variant"], out[f"{prefix}model"] = run.variant, run.model
            out[f"{prefix}time_to_90_s"] = result["time_to_90_s"]
            out[f"{prefix}acc_at_10_min"] = result["acc_within_budget"]
            out[f"{prefix}final_acc"] = result["final_acc"]
            out[f"{prefix}probe_img_per_s"] = probe
            out[f"{prefix}budget_epochs"], out[f"{prefix}budget_wall_s"] = result["epochs"], result["wall_s"]
            out[f"{prefix}epochs_within_budget"], out[f"{prefix}train_s"] = result["epochs_within_budget"], result["train_s"]
            out[f"{prefix}peak_rss_mb"] = result["peak_rss_mb"]
            t90 = f"{result['time_to_90_s']:.0f} s" if result["time_to_90_s"] is not None else "not reached"
            within = result["acc_within_budget"]
            goal = "93%" if role == "best" else "92%, the plain ViT's old goal"
            print(f"   {'best recipe' if role == 'best' else 'reference  '} {run.variant} ({run.model}, "
                  f"{' '.join(recipe_flags(run)) or 'no recipe options'}): {probe:.0f} images/s probed, "
                  f"{result['epochs']} epochs planned, {result['train_s']:.0f} s of training + evaluation "
                  f"({result['wall_s']:.0f} s with start-up), {100 * result['final_acc']:.2f}% at the end")
            print(f"      within {args.budget_min:g} min: "
                  + (f"{100 * within:.2f}% after {result['epochs_within_budget']} epochs" if within is not None
                     else "no epoch finished")
                  + f" (goal: {goal}); 90% first reached after: {t90}")
        out["budget_s"] = budget
        card = shipped_card()
        if card is None:
            print(f"   shipped {STEPS[SHIPPED_VARIANT][0]}: not in {PRETRAINED_DIR} yet (`make best-checkpoint`)")
        else:
            out["shipped_acc"], out["shipped_model"] = card["test_accuracy"], card["model"]
            out["shipped_wall_s"], out["shipped_epochs"] = card["wall_time_s"], card["epochs"]
            print(f"   shipped {card['model']}: {100 * card['test_accuracy']:.2f}% on {card['test_images']:,} test "
                  f"images after {card['epochs']} epochs, {card['wall_time_s'] / 60:.0f} min (goal: 95%; its card: "
                  f"{card['command']})")
            resnet = long_reference_row(card["budget_s"])
            if resnet is None:
                print(f"   {LONG_REFERENCE} for the same {card['budget_s'] / 60:.0f} min: not in the long part's CSV yet")
            else:
                out["long_reference_acc"], out["long_reference_model"] = float(resnet["test_accuracy"]), resnet["model"]
                out["long_reference_epochs"] = int(resnet["epochs"])
                out["long_reference_wall_s"] = float(resnet["fit_wall_s"])
                print(f"   beside it, {resnet['model']} by the same loop, planned for the same "
                      f"{card['budget_s'] / 60:.0f} min: {100 * out['long_reference_acc']:.2f}% after "
                      f"{resnet['epochs']} epochs, {out['long_reference_wall_s'] / 60:.0f} min "
                      f"({100 * (out['shipped_acc'] - out['long_reference_acc']):+.2f} points for the ViT)")
        print(f"4. Peak resident memory of the best recipe's training process: {out['peak_rss_mb']:.0f} MB "
              "(goal < 2048 MB)")
    out["goals"] = goals(out)
    print("goals: " + ", ".join(f"{k}: {'n/a' if v is None else ('met' if v else 'MISSED')}"
                                for k, v in out["goals"].items()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0
