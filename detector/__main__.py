"""`python -m detector <command>`: see `detector.cli`.

A `train` first takes the training launch policy (`detector.runs.launch`), before anything imports
torch: libgomp reads its environment when it loads.
"""

import sys

if sys.argv[1:2] == ["train"]:
    from detector.runs.launch import exec_in_training_environment

    exec_in_training_environment()

from detector.cli import main  # noqa: E402

sys.exit(main())
