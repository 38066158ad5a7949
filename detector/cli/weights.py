"""`python -m detector weights add FILE`: a pretrained weight file copied over by hand, into torchvision's cache.

For machines without network: copy the file torchvision would download (for example
fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth) and add it; it is checked (name, sha256
prefix, loads into the builder) before it goes into `$TORCH_HOME/hub/checkpoints`.
"""

from __future__ import annotations

import argparse
import json

from detector.cli import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "weights", help="pretrained weights: add a file copied over by hand, or show what is cached",
        description="Pretrained weights in torchvision's cache ($TORCH_HOME/hub/checkpoints).",
    )
    sub = p.add_subparsers(dest="weights_command", metavar="ACTION", parser_class=type(p))
    add = sub.add_parser("add", help="check a weight file and put it in torchvision's cache",
                         description="Check FILE is the weight file torchvision expects (its name, the sha256 prefix "
                                     "in the name, and that it loads into the builder), then copy it into the cache.")
    add.add_argument("file", metavar="FILE")
    add.add_argument("--json", action="store_true")
    add.set_defaults(func=cmd_add)
    status = sub.add_parser("status", help="which architectures have their pretrained weights cached")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def cmd_add(args: argparse.Namespace) -> int:
    from detector.weights import WeightsFileRefused, add_weights

    try:
        added = add_weights(args.file)
    except WeightsFileRefused as exc:
        raise CliError(str(exc), 1) from None
    except OSError as exc:
        raise CliError(f"{args.file}: could not copy it into the cache ({exc.strerror or exc})", 1) from None
    if args.json:
        print(json.dumps({"arch": added.arch, "path": str(added.path), "cached": added.status.cached,
                          "message": added.status.message, "note": added.note or None}, indent=2))
    else:
        print(f"{added.arch}: {added.status.message} ({added.path})")
        if added.note:
            print(f"note: {added.note}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from detector.models import ARCHITECTURES
    from detector.weights import weights_status

    rows = [weights_status(name) for name, a in ARCHITECTURES.items() if a.pretrained is not None]
    if args.json:
        print(json.dumps([{"arch": r.arch, "kind": r.kind, "cached": r.cached, "path": r.path,
                           "message": r.message} for r in rows], indent=2))
    else:
        for r in rows:
            print(f"{r.arch:<40} {'cached' if r.cached else 'missing':<8} {r.message}")
    return 0
