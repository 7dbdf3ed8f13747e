"""Command line: ``python -m vitcourse COMMAND ...`` (or the ``vitcourse`` script).

Each command lives in its own module with ``add_arguments(parser)`` and ``main(args) -> int``;
this table maps command names to those modules, imported only when the command is used.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("vitcourse.info", "print versions, device, data location and a throughput probe"),
    "student": ("vitcourse.exercises.student", "write student copies of the chapters"),
    "grade": ("vitcourse.exercises.grade", "grade a folder of submitted notebooks into a CSV"),
    "train": ("vitcourse.training.cli", "train a model on Fashion-MNIST"),
    "bench": ("vitcourse.experiments.bench", "benchmark against D2L's ViT and report speed and accuracy"),
    "sweep": ("vitcourse.experiments.sweep", "run (or resume) a scaling sweep into a CSV"),
    "compare": ("vitcourse.experiments.compare", "train ViT, T2T-ViT, Swin and ResNet alike into a CSV"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitcourse", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        # Only the chosen command's module is imported (see main): others may pull in heavy deps.
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        if argv and argv[0] not in {"-h", "--help"}:
            parser.error(f"unknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}")
        parser.print_help()
        return 0 if argv else 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    cmd_parser = argparse.ArgumentParser(prog=f"vitcourse {name}", description=COMMANDS[name][1])
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    return int(module.main(args) or 0)
