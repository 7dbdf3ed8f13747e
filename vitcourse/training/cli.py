"""``python -m vitcourse train``: train a preset on Fashion-MNIST from the command line.

    python -m vitcourse train --model vit_fmnist --epochs 10 --out data/runs/vit_fmnist
    python -m vitcourse train ... --resume                 # continue after Ctrl-C or a crash
    torchrun --nproc_per_node=2 -m vitcourse train ...     # data parallel (gloo on CPU)
    python -m vitcourse train ... --export data/checkpoints/vit_fmnist.pt   # + the JSON card

Every TrainConfig field is an option (``--batch-size``, ``--lr``, ``--precision`` ...), chapter
13's recipe parts included (``--trivial-augment --random-erasing 0.25 --teacher resnet_fmnist``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from . import distributed as dist_utils
from .card import ship
from .checkpoint import PRETRAINED, CheckpointError, load_checkpoint, load_pretrained, model_spec
from ..cli_args import (CommandError, device_name, model_name, number, one_of, output_file, output_folder,
                        positive_int, train_subset)
from ..data import load_data
from ..models.registry import create_model
from .config import TrainConfig
from .loop import CHECKPOINT_NAME, fit


def _config_field(name: str, kind: type) -> Callable[[str], Any]:
    """An argparse type that checks TrainConfig field `name` as TrainConfig itself does, so a bad
    value fails at parse time with TrainConfig's message ("epochs must be an int >= 1, got 0")."""
    def convert(text: str) -> Any:
        value = number(kind)(text)  # "expected an int, got 'x'" for what is not a number
        try:
            TrainConfig(**{name: value})
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value
    convert.__name__ = name
    return convert


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    field = _config_field
    parser.add_argument("--model", default="vit_fmnist", type=model_name,
                        help="preset name (`python -m vitcourse info --models` lists them)")
    parser.add_argument("--epochs", type=field("epochs", int), default=d.epochs)
    parser.add_argument("--batch-size", type=field("batch_size", int), default=d.batch_size,
                        help="global batch (split over ranks)")
    parser.add_argument("--lr", type=field("lr", float), default=d.lr)
    parser.add_argument("--weight-decay", type=field("weight_decay", float), default=d.weight_decay)
    parser.add_argument("--betas", type=number(float, at_least=0, below=1), nargs=2, default=list(d.betas))
    parser.add_argument("--warmup-frac", type=field("warmup_frac", float), default=d.warmup_frac)
    parser.add_argument("--label-smoothing", type=field("label_smoothing", float), default=d.label_smoothing)
    parser.add_argument("--grad-clip", type=field("grad_clip", float), default=d.grad_clip)
    parser.add_argument("--precision", default=d.precision, choices=["auto", "bf16", "fp16", "fp32"])
    parser.add_argument("--compile", default="auto", choices=["auto", "on", "off"])
    parser.add_argument("--seed", type=field("seed", int), default=d.seed)
    parser.add_argument("--crop-padding", type=field("crop_padding", int), default=d.crop_padding)
    parser.add_argument("--no-hflip", action="store_true", help="turn random horizontal flips off")
    parser.add_argument("--image-size", type=field("image_size", int), default=None)
    parser.add_argument("--optimizer", default=d.optimizer, choices=["adamw", "sgd"])
    parser.add_argument("--trivial-augment", action="store_true", help="TrivialAugment for 28x28 grey images")
    parser.add_argument("--random-erasing", type=field("random_erasing", float), default=d.random_erasing,
                        help="probability of erasing a random rectangle of an image")
    parser.add_argument("--mixup-alpha", type=field("mixup_alpha", float), default=d.mixup_alpha)
    parser.add_argument("--cutmix-alpha", type=field("cutmix_alpha", float), default=d.cutmix_alpha)
    parser.add_argument("--ema-decay", type=field("ema_decay", float), default=d.ema_decay,
                        help="evaluate and export the weights' moving average (e.g. 0.999); 0: off")
    parser.add_argument("--teacher", type=one_of(PRETRAINED, "a shipped checkpoint name"), default=None,
                        help="hard distillation (DeiT) from this shipped model")
    parser.add_argument("--dropout", type=number(float, at_least=0, below=1), default=None,
                        help="override the preset's dropout")
    parser.add_argument("--device", type=device_name, default=None,
                        help="cpu, cuda, mps (default: best available)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for torch (1 is faster on a busy 2-core machine)")
    parser.add_argument("--train-size", type=train_subset, default=None, help="train on a stratified subset")
    parser.add_argument("--fast", action="store_true", help="the 2,000 / 1,000 fast-mode subset")
    parser.add_argument("--out", type=output_folder, default=None,
                        help="checkpoint folder (last.pt, history.json/.csv)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--export", type=output_file, default=None,
                        help="write the trained weights here (fp32) and a JSON card next to it")
    parser.add_argument("--no-progress", action="store_true")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        betas=tuple(args.betas), warmup_frac=args.warmup_frac, label_smoothing=args.label_smoothing,
        grad_clip=args.grad_clip, precision=args.precision,
        compile={"auto": "auto", "on": True, "off": False}[args.compile], seed=args.seed,
        crop_padding=args.crop_padding, hflip=not args.no_hflip, image_size=args.image_size,
        optimizer=args.optimizer, trivial_augment=args.trivial_augment, random_erasing=args.random_erasing,
        mixup_alpha=args.mixup_alpha, cutmix_alpha=args.cutmix_alpha, ema_decay=args.ema_decay)


def build_model(args: argparse.Namespace) -> nn.Module:
    """The preset with the options that change it; a --dropout or --image-size it cannot take
    is the user's error, said before any data is loaded."""
    overrides = {} if args.dropout is None else {"dropout": args.dropout}
    try:
        model = create_model(args.model, **overrides)
    except ValueError as exc:  # the model is known (checked at parse time): the override is not
        raise CommandError(f"argument --dropout: {exc}") from None
    if args.image_size is not None:
        try:
            with torch.no_grad():
                model.eval()(torch.zeros(2, 1, args.image_size, args.image_size))
        except ValueError as exc:  # the models check their input size with a ValueError
            raise CommandError(f"argument --image-size: {args.model} cannot take "
                               f"{args.image_size}x{args.image_size} images: {exc}") from None
    return model.train()


# How a TrainConfig field is set on the command line, where that is not "--" + its name.
OPTION = {"hflip": "--no-hflip"}


def _differences(saved: dict, now: dict, label: Callable[[str], str], skip: tuple = ()) -> list[str]:
    # as plain JSON values on both sides: tuples -> lists, anything else -> its str
    saved, now = json.loads(json.dumps(saved, default=str)), json.loads(json.dumps(now, default=str))
    return [f"{label(k)} (checkpoint {saved.get(k)!r}, now {v!r})"
            for k, v in now.items() if k not in skip and saved.get(k) != v]


def check_resume(args: argparse.Namespace, config: TrainConfig, model: nn.Module) -> None:
    """Before any data is loaded: --resume needs --out, and OUT/last.pt (if there) must be a
    readable training checkpoint of this model with these options (more --epochs allowed)."""
    if not args.resume:
        return
    if args.out is None:
        raise CommandError("argument --resume: expected --out too, the folder holding last.pt, got no --out")
    path = Path(args.out) / CHECKPOINT_NAME
    if not path.is_file():
        return  # nothing to resume: fit starts the run
    start_again = "delete it, or give another --out, to start a new run"
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        raise CheckpointError(f"argument --resume: {exc}; {start_again}") from None
    if ckpt.get("format") != "vitcourse-train/1":
        raise CheckpointError(f"argument --resume: {path} is not a checkpoint of `vitcourse train` "
                              f"(format {ckpt.get('format')!r}); {start_again}")
    old, new = ckpt.get("model_spec") or {}, model_spec(model) or {}
    kind = lambda spec: spec.get("class", "?").rsplit(".", 1)[-1]  # noqa: E731 (0.1's modules moved)
    if kind(old) != kind(new):
        differ = [f"--model (checkpoint a {kind(old)}, now {args.model}, a {kind(new)})"]
    else:
        differ = _differences(old.get("config", {}), new.get("config", {}),
                              lambda k: f"--model {args.model}'s {k}")
    differ += _differences(ckpt.get("config", {}), dataclasses.asdict(config),
                           lambda k: OPTION.get(k, "--" + k.replace("_", "-")), skip=("epochs", "compile"))
    if differ:
        raise CommandError(f"argument --resume: {path} was written by another run, it differs in "
                           f"{'; '.join(differ)}: resume with the same options, or {start_again}")


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    config = config_from_args(args)
    torch.manual_seed(config.seed)  # the initial weights depend on the seed too
    model = build_model(args)
    check_resume(args, config, model)
    try:
        teacher = load_pretrained(args.teacher) if args.teacher else None
    except FileNotFoundError as exc:
        raise CommandError(f"argument --teacher: {exc}") from None
    data = load_data(fast=args.fast, train_size=args.train_size)
    result = fit(model, data, config, device=args.device, checkpoint_dir=args.out, resume=args.resume,
                 progress=not args.no_progress, teacher=teacher)
    if dist_utils.is_main():
        print(f"{args.model}: {len(result.history)} epochs, test accuracy {100 * result.test_accuracy:.2f}%, "
              f"{result.images_per_s:.0f} img/s, {result.wall_time_s:.0f} s"
              + (" (interrupted)" if result.interrupted else ""))
        if args.export and not result.interrupted:
            export(result, args, config, data)
    dist_utils.cleanup()
    return 130 if result.interrupted else 0


def export(result, args: argparse.Namespace, config: TrainConfig, data) -> None:
    """Ship the trained model with its card (see `vitcourse.training.card`)."""
    command = ("python -m vitcourse " + " ".join(shlex.quote(a) for a in sys.argv[1:])
               if sys.argv and sys.argv[0].endswith("__main__.py") else " ".join(map(shlex.quote, sys.argv)))
    ship(result.model, args.export, name=args.model, command=command, config=config, data=data,
         history=result.history, wall_time_s=result.wall_time_s, images_per_s=result.images_per_s,
         teacher=args.teacher or "")
