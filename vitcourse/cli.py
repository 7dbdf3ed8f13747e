"""Command line: ``python -m vitcourse COMMAND ...`` (or the ``vitcourse`` script).

Each command lives in its own module with ``add_arguments(parser)`` and ``main(args) -> int``;
this table maps command names to those modules, imported only when the command is used.

Whatever a user can get wrong (a bad argument, data that is missing or damaged, a damaged
checkpoint, Ctrl-C) ends as one line on stderr, ``vitcourse COMMAND: error: ...``, and exit
status 2 (argparse's convention; 130 for Ctrl-C), never a traceback; output piped into a reader
that stops early (``| head``) ends quietly. Only the exception types in `user_errors` are
caught, so a bug in vitcourse still shows its traceback.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from typing import NoReturn

from .cli_args import CommandError

COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("vitcourse.info", "print versions, device, data location and a throughput probe"),
    "student": ("vitcourse.exercises.student", "write student copies of the chapters"),
    "grade": ("vitcourse.exercises.grade", "grade a folder of submitted notebooks into a CSV"),
    "train": ("vitcourse.training.cli", "train a model on Fashion-MNIST"),
    "pretrain": ("vitcourse.training.pretrain_cli", "chapter 14: pre-train a masked autoencoder on the images alone"),
    "bench": ("vitcourse.experiments.bench", "benchmark against D2L's ViT and report speed and accuracy"),
    "sweep": ("vitcourse.experiments.sweep", "run (or resume) a scaling sweep into a CSV"),
    "compare": ("vitcourse.experiments.compare", "train ViT, T2T-ViT, Swin and ResNet alike into a CSV"),
    "mixers": ("vitcourse.experiments.token_mixers", "chapter 11: token-mixer and norm ablations, cost vs tokens"),
    "robustness": ("vitcourse.experiments.vit_vs_cnn", "chapter 12: ViT vs CNN under corruptions and attacks, CKA"),
    "gpucheck": ("vitcourse.experiments.gpu_check", "fp16/bf16 + compile, resume bit-exactness and speed on a GPU, into JSON"),
    "labels": ("vitcourse.experiments.label_efficiency", "chapter 14: accuracy against the number of labels, MAE vs scratch, into a CSV"),
    "smalldata": ("vitcourse.experiments.small_data", "chapter 13: the small-data recipe, step by step, at a fixed budget"),
}


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are raised as `CommandError` (one line, said by `main`)
    instead of printing the usage block and exiting. Abbreviated options are refused: argparse
    would read `--epoch 3` as `--epochs 3`, and a typo should never start a long run."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            known = [s for action in self._actions for s in action.option_strings]
            close = {m for word in message.split(":", 1)[1].split() if word.startswith("-")
                     for m in difflib.get_close_matches(word.split("=")[0], known, n=2)}
            if close:
                message += f" (did you mean {' or '.join(sorted(close))}?)"
        raise CommandError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="vitcourse", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        # Only the chosen command's module is imported (see main): others may pull in heavy deps.
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """The failures a user causes and can fix, each with a message that says how."""
    from .data import DataDamagedError, DataNotFoundError
    from .training.checkpoint import CheckpointError
    from .training.loop import TrainingDiverged

    return CommandError, DataNotFoundError, DataDamagedError, CheckpointError, TrainingDiverged


def one_line(message: str) -> str:
    """`message` on one line: its lines joined, runs of spaces as one, "- item" lines as "a, b, c"."""
    out = ""
    bullet = False
    for line in (" ".join(piece.split()) for piece in message.splitlines()):
        if not line:
            continue
        item = line.startswith("- ")
        out += (", " if item and bullet else " " if out else "") + (line[2:] if item else line)
        bullet = item
    return out


def fail(prog: str, message: str, status: int = 2) -> int:
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in {"-h", "--help"}:
        parser.print_help()
        return 0 if argv else 2
    name = argv[0]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return fail("vitcourse", f"unknown command {name!r}; {hint}expected one of: {', '.join(COMMANDS)} "
                                 "(see `vitcourse --help`)")
    prog = f"vitcourse {name}"
    module = importlib.import_module(COMMANDS[name][0])
    cmd_parser = CommandParser(prog=prog, description=COMMANDS[name][1])
    module.add_arguments(cmd_parser)
    try:
        args = cmd_parser.parse_args(argv[1:])
        status = int(module.main(args) or 0)
        sys.stdout.flush()  # here, so that a reader gone away (BrokenPipeError) is seen below
        return status
    except user_errors() as exc:
        return fail(prog, str(exc))
    except KeyboardInterrupt:  # Ctrl-C outside what a command handles itself (train's loop does)
        return fail(prog, "interrupted (Ctrl-C)", status=130)
    except BrokenPipeError:  # `... | head` stopped reading: not an error worth a word
        # Python flushes stdout at exit; pointed at /dev/null, that flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a process that SIGPIPE stopped
