"""`python -m vitcourse pretrain`: pre-train chapter 14's masked autoencoder on the 60,000 training
images without their labels (resumable), and ship it with its card.

    python -m vitcourse pretrain --epochs 30 --out data/runs/mae_fmnist --export data/checkpoints/mae_fmnist.pt
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from ..cli_args import CommandError, device_name, number, output_file, output_folder, positive_float, positive_int
from ..data import load_data
from ..models.mae import MAE, MAEConfig
from .checkpoint import atomic_write, export_model, load_checkpoint
from .pretrain import CHECKPOINT_NAME, PretrainConfig, masked_loss, pretrain
from .provenance import git_commit, hardware_info


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = PretrainConfig()
    parser.add_argument("--epochs", type=positive_int, default=d.epochs)
    parser.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    parser.add_argument("--lr", type=positive_float, default=d.lr)
    parser.add_argument("--mask-ratio", type=number(float, at_least=0, below=1), default=MAEConfig().mask_ratio,
                        help="fraction of patches removed (0.75, the paper's)")
    parser.add_argument("--no-norm-pix-loss", action="store_true", help="raw pixels as targets")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    parser.add_argument("--device", type=device_name, default=None, help="cpu, cuda, mps (default: best available)")
    parser.add_argument("--fast", action="store_true", help="the 2,000 / 1,000 fast-mode subset")
    parser.add_argument("--out", type=output_folder, default=None, help="checkpoint folder (last.pt, history.csv)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--export", type=output_file, default=None, help="write the pre-trained MAE here and its JSON card beside it")
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume and not args.out:
        raise CommandError("argument --resume: needs --out, the folder holding last.pt")
    try:
        model_config = MAEConfig(mask_ratio=args.mask_ratio, norm_pix_loss=not args.no_norm_pix_loss)
        config = PretrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.resume and (Path(args.out) / CHECKPOINT_NAME).is_file():
        saved = load_checkpoint(Path(args.out) / CHECKPOINT_NAME)
        if saved.get("model_spec", {}).get("config") != dataclasses.asdict(model_config):
            raise CommandError(f"argument --resume: {args.out} holds another model's run "
                               "(--mask-ratio or --no-norm-pix-loss differ); use another --out")
    torch.manual_seed(config.seed)  # the initial weights depend on the seed
    model = MAE(model_config)
    data = load_data(fast=args.fast)
    try:
        result = pretrain(model, data.train_images, data.test_images, config, device=args.device,
                          checkpoint_dir=args.out, resume=args.resume, progress=not args.no_progress)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    last = result.history[-1] if result.history else {}
    print(f"mae_fmnist: {len(result.history)} epochs, masked-patch loss {last.get('train_loss', float('nan')):.4f} "
          f"(test {last.get('test_loss', float('nan')):.4f}), {result.images_per_s:.0f} img/s, "
          f"{result.wall_time_s:.0f} s" + (" (interrupted)" if result.interrupted else ""))
    if args.export and not result.interrupted:
        ship_mae(result, args.export, config, data)
    return 130 if result.interrupted else 0


def ship_mae(result, path: str, config: PretrainConfig, data) -> dict:
    """The pre-trained MAE's weights and its card (command, commit, hardware, loss curve)."""
    path = Path(path)
    command = ("python -m vitcourse " + " ".join(shlex.quote(a) for a in sys.argv[1:])
               if sys.argv and sys.argv[0].endswith("__main__.py") else " ".join(map(shlex.quote, sys.argv)))
    model = result.model.cpu().eval()
    card = {
        "model": "mae_fmnist", "command": command, "seed": config.seed, "commit": git_commit(),
        "epochs": len(result.history), "train_images": len(data.train_images), "labels_used": 0,
        "test_masked_loss": masked_loss(model, data.test_images),  # all test images, masks of seed 0
        "test_images": len(data.test_images),
        "wall_time_s": round(result.wall_time_s, 1), "images_per_s": round(result.images_per_s, 1),
        "hardware": hardware_info("cpu"), "config": dataclasses.asdict(config),
        "model_config": model.config.to_dict(), "history": result.history,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    export_model(model, path, card=card)
    atomic_write(path.with_suffix(".json"), lambda f: f.write(json.dumps(card, indent=1) + "\n"), text=True)
    print(f"wrote {path} and {path.with_suffix('.json')}: test masked-patch loss {card['test_masked_loss']:.4f}")
    return card
