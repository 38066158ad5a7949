"""ui.diagnose.glue: the pass a page asks for is the one the CLI runs for the same model and data."""

from __future__ import annotations

import pytest

from detector import checkpoints
from detector.diagnosis import passes
from detector.evaluation import evaluation_images

pytest.importorskip("pycocotools")


def test_the_cli_and_the_page_name_the_same_pass(tiny_checkpoint, tmp_path):
    """A stored dataset diagnosed from the CLI (by its folder) and from /diagnose (by its name) with
    the same checkpoint meets in one pass folder."""
    import shutil

    from detector.data import store
    from detector.data.synthetic import write_synthetic
    from ui.diagnose import glue
    from ui.links import models_dir

    stored = store.store_upload("meet", write_synthetic(tmp_path / "meet", images=4, seed=2, width=160, height=120))
    models_dir().mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_checkpoint, models_dir() / "meet.pt")
    loaded = checkpoints.load_model(str(models_dir() / "meet.pt"), "cpu")
    page = glue.pass_request(loaded, glue.Target("x", stored.name, "all", stored.name), 4)
    chosen = evaluation_images(stored.name, "all", loaded.class_names)
    top_n = int(loaded.model.rpn._pre_nms_top_n["testing"])
    cli = passes.pass_identity(loaded.model, passes.model_version(str(models_dir() / "meet.pt")),
                               str(chosen.root.resolve()), "all", chosen.records, glue.PASS_BATCH, top_n)
    assert page.identity == cli and page.folder == passes.pass_folder(cli)
