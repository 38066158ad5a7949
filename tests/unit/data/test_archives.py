"""Archives cost what they hold: zip bombs refused before a byte is written (compression-ratio rule
and size cap, the message says which), the disk checked first (the message says how much is
needed), and everything written for a refused or failed archive removed; the workspace is left
exactly as it was. The unpacked-archive cache is bounded, least recently used first."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest

from detector.cli import main as cli_main
from detector.data import DatasetError, DatasetRefused, load_dataset, store_upload
from detector.data import unpack_cache
from detector.data.archives import ArchiveLimits, check_zip, extract_zip
from detector.workspace import datasets_dir, uploads_dir, workspace_root
from tests.unit.data.exports import roboflow_coco, ultralytics_yolo, voc_devkit_negatives, zip_folder

MiB = 1024**2


def workspace_state() -> dict[str, int]:
    """Every path under the workspace with its size (folders 0): "left exactly as it was" is equality."""
    root = workspace_root()
    uploads_dir(), datasets_dir()  # the standing folders, created on first use by any call
    return {p.relative_to(root).as_posix(): (p.stat().st_size if p.is_file() else 0) for p in root.rglob("*")}


def streamed_bomb(path: Path, mib: int) -> Path:
    """A real zip bomb: `mib` MiB of zeros deflated while streaming (a real central directory)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("annotations.json", b'{"images": [], "annotations": [], "categories": []}')
        with zf.open("images/zeros.bin", "w", force_zip64=True) as member:
            chunk = b"\0" * MiB
            for _ in range(mib):
                member.write(chunk)
    return path


def crafted(members: list[tuple[str, int, int]]) -> bytes:
    """A zip whose central directory declares (name, uncompressed, compressed) sizes: the defaults'
    thresholds tested without writing gigabytes (the refusal comes from the directory alone)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("annotations.json", b"{}")
        for name, _, _ in members:
            zf.writestr(name, b"x" * 16)
    data = bytearray(buf.getvalue())
    sizes = {name.encode(): (file_size, compress_size) for name, file_size, compress_size in members}
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        n = struct.unpack("<H", data[pos + 28: pos + 30])[0]
        name = bytes(data[pos + 46: pos + 46 + n])
        if name in sizes:
            data[pos + 20: pos + 24] = struct.pack("<I", sizes[name][1])
            data[pos + 24: pos + 28] = struct.pack("<I", sizes[name][0])
        pos = data.find(b"PK\x01\x02", pos + 4)
    return bytes(data)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    path = streamed_bomb(tmp_path_factory.mktemp("bomb") / "bomb.zip", 64)
    assert path.stat().st_size < 256 * 1024  # 64 MiB from well under a quarter of a MiB
    return path


def test_a_zip_bomb_is_refused_by_the_ratio_rule_before_writing(bomb, capsys):
    before = workspace_state()
    for attempt in (lambda: store_upload("bomb.zip", bomb.read_bytes()), lambda: store_upload("bomb.zip", bomb),
                    lambda: load_dataset(bomb)):
        with pytest.raises(DatasetRefused, match=r"images/zeros.bin.*expands .* times.*compression-ratio rule"):
            attempt()
        assert workspace_state() == before
    assert cli_main(["validate", str(bomb)]) == 2
    assert "compression-ratio rule" in capsys.readouterr().err and workspace_state() == before


def test_a_zip_bomb_under_the_ratio_is_refused_by_the_size_cap(bomb, tmp_path):
    before = workspace_state()
    limits = ArchiveLimits(max_ratio=float("inf"), max_total_bytes=32 * MiB)
    with pytest.raises(DatasetRefused, match=r"over the limit of 32.0 MiB \(size cap"):
        store_upload("bomb.zip", bomb.read_bytes(), limits=limits)
    with pytest.raises(DatasetRefused, match="size cap"):
        load_dataset(bomb, limits=limits)
    with pytest.raises(DatasetRefused, match="size cap"):
        extract_zip(bomb, tmp_path / "out", limits=limits)
    assert workspace_state() == before and list(tmp_path.iterdir()) == []


def test_the_real_defaults_refuse_3_gib_from_3_mib_by_its_header():
    before = workspace_state()
    one_member = crafted([("images/huge.bin", 3 * 1024**3, 3 * MiB)])
    with pytest.raises(DatasetRefused, match=r"expands 1,024 times \(3.0 MiB to 3.0 GiB\).*compression-ratio rule"):
        store_upload("huge.zip", one_member)
    three = crafted([(f"images/{i}.bin", 3 * 1024**3, 3 * 1024**3 - 1) for i in range(3)])  # ratio 1, 9 GiB
    with pytest.raises(DatasetRefused, match=r"over the limit of 8.0 GiB \(size cap"):
        store_upload("three.zip", three)
    assert workspace_state() == before


def test_disk_space_is_checked_before_unpacking(tmp_path):
    export = ultralytics_yolo(tmp_path / "y")
    archive = zip_folder(export.root, tmp_path / "y.zip")
    before = workspace_state()
    small = ArchiveLimits(free_space=lambda folder: 5 * MiB)  # less than the 256 MiB margin
    with pytest.raises(DatasetRefused, match=r"needs 256.\d MiB of disk to unpack .* only 5.0 MiB free in the workspace"):
        store_upload("y.zip", archive.read_bytes(), limits=small)
    with pytest.raises(DatasetRefused, match="needs .* only 5.0 MiB free"):
        load_dataset(archive, limits=small)
    with pytest.raises(DatasetRefused, match="needs .* only 5.0 MiB free"):
        store_upload("y", export.root, limits=small)  # a folder is copied: checked too
    assert workspace_state() == before
    roomy = ArchiveLimits(free_space=lambda folder: 10 * 1024**3)
    assert load_dataset(archive, limits=roomy).usable


def test_a_zip_that_is_no_dataset_leaves_no_unpacked_copy(tmp_path):
    archive = tmp_path / "notes.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("notes/readme.txt", "nothing to see")
    before = workspace_state()
    with pytest.raises(DatasetError, match="no COCO JSON, Pascal VOC XML or YOLO labels"):
        load_dataset(archive)
    with pytest.raises(DatasetError):
        store_upload("notes.zip", archive.read_bytes())
    assert workspace_state() == before


def test_a_corrupt_member_leaves_nothing(tmp_path):
    export = roboflow_coco(tmp_path / "r")
    data = bytearray(zip_folder(export.root, tmp_path / "r.zip").read_bytes())
    at = data.find(b"PK\x03\x04", 100)  # the data of a member after the first: flip bytes
    data[at + 60: at + 80] = b"\xff" * 20
    before = workspace_state()
    with pytest.raises(DatasetError):
        store_upload("r.zip", bytes(data))
    (tmp_path / "bad.zip").write_bytes(bytes(data))
    with pytest.raises(DatasetError):
        load_dataset(tmp_path / "bad.zip")
    assert workspace_state() == before


def test_the_unpacked_cache_is_reused_and_bounded_least_recently_used_first(tmp_path, monkeypatch):
    zips = {}
    for name, build in (("a", ultralytics_yolo), ("b", roboflow_coco), ("c", voc_devkit_negatives)):
        zips[name] = zip_folder(build(tmp_path / name).root, tmp_path / f"{name}.zip")
    sizes = {}
    for name, archive in zips.items():
        with zipfile.ZipFile(archive) as zf:
            sizes[name] = sum(info.file_size for info, _ in check_zip(zf, name))
    for entry, _, _ in unpack_cache.entries():  # start from an empty cache
        unpack_cache.discard(entry)
    monkeypatch.setenv("DETECTOR_UNPACKED_CACHE_GB", str((sizes["a"] + sizes["b"] + sizes["c"] - 1) / 1024**3))
    first = load_dataset(zips["a"]).root
    assert load_dataset(zips["a"]).root == first and len(unpack_cache.entries()) == 1  # reused, not copied again
    load_dataset(zips["b"])
    load_dataset(zips["a"])  # a is now the most recently used
    load_dataset(zips["c"])  # over the cap: b (least recently used) goes
    held = {Path(e).name for e, _, _ in unpack_cache.entries()}
    assert held == {unpack_cache.content_key(zips["a"]), unpack_cache.content_key(zips["c"])}
    assert sum(size for _, size, _ in unpack_cache.entries()) == sizes["a"] + sizes["c"]
    monkeypatch.setenv("DETECTOR_UNPACKED_CACHE_GB", str((sizes["b"] - 1) / 1024**3))
    before = workspace_state()
    with pytest.raises(DatasetRefused, match="more than the unpacked-archive cache holds .* register the folder by path"):
        load_dataset(zips["b"])
    assert workspace_state() == before
