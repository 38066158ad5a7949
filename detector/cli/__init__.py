"""`python -m detector <command>`: one sub-module per group of commands.

Each sub-module in COMMAND_MODULES defines `register(subparsers)`, which adds its commands with
`set_defaults(func=...)` (the commands that run a model through `model_command`, which takes the
model source, dataset and run options from the helpers here and the description from `func`'s
docstring); `func(args) -> int` returns the exit code. Contract (README, Command line): human
output by default, `--json` for machines, exit 0 on success, non-zero with a one-line reason on
stderr otherwise, never a traceback for bad input: raise `CliError` for that.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from typing import Callable

# Imported lazily by name so `--help` and light commands (validate) start fast.
COMMAND_MODULES = ("detector.cli.anchors", "detector.cli.data", "detector.cli.train", "detector.cli.detect",
                   "detector.cli.explain", "detector.cli.export", "detector.cli.diagnose", "detector.cli.weights",
                   "detector.cli.study")


class CliError(Exception):
    """A bad input or a refused request: printed as one line on stderr, exit `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own code)
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_model_source(p: argparse.ArgumentParser, default: bool = True) -> None:
    """--checkpoint / --model / --classes: the one way a command names its model (checkpoints.load_chosen)."""
    p.add_argument("--checkpoint", metavar="RUN_DIR|FILE|demo",
                   help="a run folder (best.pt, else last.pt), a checkpoint file, or demo"
                        + (" (default: COCO weights if cached, else demo)" if default else ""))
    p.add_argument("--model", metavar="NAME", help="with no --checkpoint: this builder with its COCO weights; with "
                                                    "--checkpoint FILE: the architecture of a bare state_dict")
    p.add_argument("--classes", metavar="A,B,C",
                   help="with --checkpoint FILE --model NAME for a bare state_dict: its class names in label order "
                        "(default: COCO's for 91 classes, else numbered)")


def add_dataset_split(p: argparse.ArgumentParser) -> None:
    """--data DATASET and --split val|train|all (evaluate, diagnose)."""
    p.add_argument("--data", required=True, metavar="DATASET")
    p.add_argument("--split", choices=("val", "train", "all"), default="all",
                   help="which images of DATASET (default all)")


def model_command(subparsers: argparse._SubParsersAction, name: str, help: str, func: Callable[[argparse.Namespace], int],
                  *, default: bool = True, dataset: bool = False) -> argparse.ArgumentParser:
    """The parser of a command that runs a model (detect, evaluate, diagnose, export): `name` with its
    one-line `help`, run by `func`, whose docstring is the command's description in `--help`; the
    model source (`add_model_source`, `default` as there) and, with `dataset`, --data / --split
    (`add_dataset_split`)."""
    p = subparsers.add_parser(name, help=help, description=inspect.cleandoc(func.__doc__ or help))
    p.set_defaults(func=func)
    add_model_source(p, default=default)
    if dataset:
        add_dataset_split(p)
    return p


def add_run_options(p: argparse.ArgumentParser, batch_size: int) -> None:
    """--device auto|cpu|cuda (default auto) and --batch-size (images per forward)."""
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--batch-size", type=int, default=batch_size)


def load_model_source(args: argparse.Namespace):
    """The LoadedModel that --checkpoint / --model / --classes and --device name; a bad source is a CliError (exit 2)."""
    from detector import checkpoints, models, weights

    try:
        device = models.resolve_device(args.device)
        return checkpoints.load_chosen(args.checkpoint, args.model, args.classes, device)
    except (ValueError, checkpoints.CheckpointError, weights.WeightsUnavailable) as exc:
        raise CliError(str(exc), 2) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m detector",
        description="Faster R-CNN Explorer: anchors, datasets, training, evaluation and detection.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that group is not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
