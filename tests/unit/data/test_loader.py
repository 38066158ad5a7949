"""Datasets as real annotation tools export them (tests/unit/data/exports.py), folder and zip: the exact
records (images, negatives, every box within 0.01 px, class names in order, splits) and no warning."""

from __future__ import annotations

import json

import pytest

from detector.cli import main as cli_main
from detector.data import load_dataset
from tests.unit.data.exports import BUILDERS, cvat_voc, voc_devkit_negatives, zip_folder


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    return {name: build(root / name) for name, build in BUILDERS.items()}


def assert_exact(ds, export) -> None:
    assert ds.format == export.format
    assert ds.class_names == export.classes
    assert [p.to_dict() for p in ds.problems] == []  # clean data from a real writer: no warning at all
    assert ds.usable
    got = {r.file: r for r in ds.records}
    assert sorted(got) == sorted(export.boxes) and len(ds.records) == len(export.boxes)
    assert ds.empty_images == export.empty_images
    for file, objects in export.boxes.items():
        record = got[file]
        assert [ds.class_names[label - 1] for label in record.labels] == [cls for cls, _ in objects], file
        for box, (_, want) in zip(record.boxes, objects):
            assert max(abs(a - b) for a, b in zip(box, want)) < 0.01, (file, box, want)
    assert {k: len(v) for k, v in (ds.splits or {}).items()} == export.splits


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_export_folder_loads_exactly(exports, name):
    assert_exact(load_dataset(exports[name].root), exports[name])


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_export_zip_loads_exactly(exports, tmp_path, name):
    archive = zip_folder(exports[name].root, tmp_path / f"{name}.zip")
    assert_exact(load_dataset(archive), exports[name])


def test_coco_all_tasks_uses_the_instances_files_and_names_the_others(exports):
    ds = load_dataset(exports["coco_all_tasks"].root)
    ignored = {f.file: f.reason for f in ds.ignored_files}
    written = sorted(p.relative_to(exports["coco_all_tasks"].root).as_posix()
                     for p in (exports["coco_all_tasks"].root / "annotations").glob("*.json"))
    assert sorted(ignored) == [f for f in written if not f.startswith("annotations/instances_")]
    assert len(ignored) == 10  # the five other tasks of each subset
    assert "images only" in ignored["annotations/image_info_train.json"]
    assert "captions" in ignored["annotations/captions_train.json"]
    assert "panoptic" in ignored["annotations/panoptic_train.json"]
    assert "instances_train.json" in ignored["annotations/person_keypoints_train.json"]
    report = ds.report()
    assert report["ignored_files"] and all(set(f) == {"file", "reason"} for f in report["ignored_files"])
    assert [r.image_id for r in ds.records] == ["train/1", "train/2", "train/3", "val/4"]


def test_voc_negatives_without_xml_are_counted_in_the_report(exports):
    ds = load_dataset(exports["voc_devkit_negatives"].root)
    assert ds.notes == ("2 image(s) without an XML file (listed in ImageSets/Main) kept as negative images",)
    assert ds.voc_coordinates[0] == "one-based"
    train = [ds.records[i].image_id for i in ds.splits["train"]]
    assert sorted(train) == ["000001", "000002", "000003"]


def test_voc_negatives_without_image_sets_come_from_jpegimages(tmp_path):
    export = voc_devkit_negatives(tmp_path / "v")
    base = tmp_path / "v" / export.base
    for p in sorted((base / "ImageSets").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (base / "ImageSets").rmdir()
    ds = load_dataset(tmp_path / "v")
    assert ds.empty_images == 2 and len(ds.records) == 5 and ds.problems == ()
    assert ds.notes == ("2 image(s) without an XML file (in JPEGImages/) kept as negative images",)


def test_voc_listed_image_without_a_file_is_reported(tmp_path):
    export = voc_devkit_negatives(tmp_path / "v")
    main = tmp_path / "v" / export.base / "ImageSets" / "Main"
    (main / "val.txt").write_text((main / "val.txt").read_text() + "000099\n")
    ds = load_dataset(tmp_path / "v")
    [problem] = ds.problems
    assert problem.file == "ImageSets/Main/val.txt" and problem.line == 3 and problem.id == "000099"
    assert "no XML and no image" in problem.message and len(ds.records) == 5


def test_voc_coordinate_convention_is_decided_reported_and_forcible(exports, capsys):
    root = exports["cvat_voc"].root
    auto = load_dataset(root)
    convention, why = auto.voc_coordinates
    assert convention == "zero-based" and "Annotations/img_0.xml" in why and "xmin 0" in why
    assert auto.records[0].boxes[0] == (0.0, 0.0, 33.5, 20.25)
    forced = load_dataset(root, voc_coordinates="one-based")
    assert forced.voc_coordinates[0] == "one-based" and forced.records[0].boxes[0] == (-1.0, -1.0, 33.5, 20.25)
    assert any("extends outside" in p.message for p in forced.problems)  # the devkit reading is wrong here
    assert cli_main(["validate", str(root), "--json", "--voc-coordinates", "one-based"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["voc_coordinates"]["convention"] == "one-based" and "as asked" in report["voc_coordinates"]["reason"]
    assert cli_main(["validate", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["voc_coordinates"]["convention"] == "zero-based" and report["problems"] == []
    devkit = load_dataset(exports["voc_devkit_negatives"].root)
    assert devkit.voc_coordinates[0] == "one-based" and "whole number of at least 1" in devkit.voc_coordinates[1]
    label_studio = load_dataset(exports["label_studio_voc"].root)
    assert label_studio.voc_coordinates[0] == "zero-based" and "Label Studio" in label_studio.voc_coordinates[1]


def test_cvat_voc_forced_zero_based_on_whole_numbers(tmp_path):
    """A zero-based writer whose boxes happen to be whole numbers >= 1 cannot be told apart: force it."""
    export = cvat_voc(tmp_path / "c")
    xml = tmp_path / "c" / "Annotations" / "img_1.xml"
    for f in (tmp_path / "c" / "Annotations").glob("*.xml"):
        if f != xml:
            f.unlink()
    ds = load_dataset(tmp_path / "c")
    assert ds.voc_coordinates[0] == "one-based" and ds.records[0].boxes[0] == (11.0, 12.0, 50.0, 60.0)
    ds = load_dataset(tmp_path / "c", voc_coordinates="zero-based")
    assert ds.records[0].boxes[0] == export.boxes["JPEGImages/img_1.jpg"][0][1]
