"""detector.cli's parser: the commands that run a model declare their model source, dataset and run
options through one helper (cli.model_command, add_run_options), with the same flags and defaults."""

from __future__ import annotations

import inspect

import pytest

from detector.cli import build_parser


def _subparsers(parser):
    return next(a for a in parser._actions if a.dest == "command").choices


MODEL_COMMANDS = {  # command -> (its required arguments besides the model, dataset flags?, batch size or None)
    "detect": (["a.jpg"], False, 4),
    "evaluate": (["--data", "d"], True, 2),
    "diagnose": (["--data", "d"], True, 2),
    "export": (["--format", "onnx", "--out", "x.onnx"], False, None),
}


@pytest.mark.parametrize("command", sorted(MODEL_COMMANDS))
def test_model_commands_share_the_model_source_and_run_options(command, capsys):
    required, dataset, batch = MODEL_COMMANDS[command]
    parser = build_parser()
    args = parser.parse_args([command, *required, "--checkpoint", "run", "--model", "m", "--classes", "a,b"])
    assert (args.checkpoint, args.model, args.classes) == ("run", "m", "a,b")
    assert args.func.__module__.startswith("detector.cli.")
    # the description in --help is the docstring of the function that runs the command
    sub = _subparsers(parser)[command]
    assert sub.description == inspect.cleandoc(args.func.__doc__) and len(sub.description) > 40
    if dataset:
        assert args.split == "all"
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command])  # --data is required
        assert exit_info.value.code == 2 and "--data" in capsys.readouterr().err
    else:
        assert not hasattr(args, "data")
    if batch is not None:
        assert (args.device, args.batch_size) == ("auto", batch)
        assert parser.parse_args([command, *required, "--device", "cpu"]).device == "cpu"
        with pytest.raises(SystemExit):
            parser.parse_args([command, *required, "--device", "tpu"])
    else:
        assert not hasattr(args, "device")
