"""Registering a dataset by path: only under the workspace and DETECTOR_DATA_ROOTS, as written and
once links are resolved; refusals name no server path; a registered folder is read in place."""

from __future__ import annotations

import os

import pytest

from detector.data import DatasetError, DatasetRefused, open_dataset
from detector.data.roots import allowed_path, data_roots
from detector.data.store import register_path, reread
from detector.workspace import datasets_dir, uploads_dir, workspace_root
from tests.unit.data.exports import cvat_voc, ultralytics_yolo, zip_folder


@pytest.fixture
def allowed(tmp_path, monkeypatch):
    root = tmp_path / "allowed"
    root.mkdir()
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.setenv("DETECTOR_DATA_ROOTS", os.pathsep.join([str(root), str(tmp_path / "missing")]))
    return root, other


def test_roots_are_the_workspace_and_the_listed_folders(allowed):
    root, _ = allowed
    assert data_roots() == (workspace_root(), root.resolve())  # a listed folder that does not exist is skipped


def test_a_folder_is_registered_in_place_without_copying(allowed):
    root, _ = allowed
    export = ultralytics_yolo(root / "big" / "yolo")
    uploads_before = sorted(uploads_dir().rglob("*"))
    stored = register_path(str(root / "big" / "yolo"))
    assert stored.root == export.root.resolve() and stored.dataset.format == "yolo" and len(stored.dataset.records) == 5
    assert sorted(uploads_dir().rglob("*")) == uploads_before  # nothing copied
    assert sorted(p.name for p in (datasets_dir() / stored.name).iterdir()) == ["dataset.json", "summary.json"]
    assert open_dataset(stored.name).dataset.records == stored.dataset.records
    assert len(stored.train_indices) == 3 and len(stored.val_indices) == 2  # its own train/val split


def test_a_zip_is_registered_without_copying_the_archive(allowed):
    root, _ = allowed
    archive = zip_folder(cvat_voc(root / "src").root, root / "cvat.zip")
    stored = register_path(str(archive))
    assert stored.dataset.voc_coordinates[0] == "zero-based" and stored.dataset.problems == ()
    assert not list(uploads_dir().glob("cvat*"))
    again = reread(stored.name, voc_coordinates="one-based")  # the page's convention switch
    assert again.name == stored.name and again.dataset.voc_coordinates[0] == "one-based"
    assert any("extends outside" in p.message for p in again.dataset.problems)


@pytest.mark.parametrize("how", ["outside", "dotdot", "symlink-folder", "symlink-inside"])
def test_paths_outside_the_roots_are_refused_without_naming_where_they_lead(allowed, how):
    root, other = allowed
    ultralytics_yolo(other / "secret")
    if how == "outside":
        text = str(other / "secret")
    elif how == "dotdot":
        text = str(root / ".." / "elsewhere" / "secret")
    elif how == "symlink-folder":
        (root / "link").symlink_to(other / "secret", target_is_directory=True)
        text = str(root / "link")
    else:
        (root / "inner").mkdir()
        (root / "inner" / "up").symlink_to(other, target_is_directory=True)
        text = str(root / "inner" / "up" / "secret")
    listing = sorted(datasets_dir().iterdir())
    with pytest.raises(DatasetRefused, match="refused") as refused:
        register_path(text)
    assert str(other) not in str(refused.value) and str(root) not in str(refused.value)
    assert sorted(datasets_dir().iterdir()) == listing


def test_a_missing_path_and_an_empty_one_are_plain_errors(allowed):
    root, _ = allowed
    with pytest.raises(DatasetError, match="nope: no such file or folder"):
        allowed_path(str(root / "nope"))
    with pytest.raises(DatasetError, match="give the path"):
        allowed_path("  ")


def test_a_file_link_leading_out_of_a_registered_folder_is_not_read(allowed):
    root, other = allowed
    export = ultralytics_yolo(root / "ds")
    (other / "passwd.txt").write_text("root:x:0:0\n")
    (export.root / "labels" / "train" / "stolen.txt").symlink_to(other / "passwd.txt")
    stored = register_path(str(export.root))
    [problem] = stored.dataset.problems
    assert problem.file == "labels/train/stolen.txt" and "symbolic link leading outside" in problem.message


def test_a_registration_that_is_no_longer_allowed_does_not_open(allowed, monkeypatch):
    root, _ = allowed
    stored = register_path(str(ultralytics_yolo(root / "ds").root))
    monkeypatch.setenv("DETECTOR_DATA_ROOTS", "")
    with pytest.raises(DatasetRefused, match="not under a folder datasets may be registered from"):
        open_dataset(stored.name)


def test_validate_a_stored_dataset_with_the_convention_forced(allowed, capsys):
    import json

    from detector.cli import main as cli_main

    root, _ = allowed
    stored = register_path(str(cvat_voc(root / "v").root))
    assert cli_main(["validate", stored.name, "--json", "--voc-coordinates", "one-based"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["voc_coordinates"]["convention"] == "one-based" and len(report["problems"]) == 1
    assert open_dataset(stored.name).dataset.voc_coordinates[0] == "zero-based"  # the stored copy is unchanged
