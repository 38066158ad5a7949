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
from detector.data import DatasetError, DatasetRefused, archives, load_dataset, store_upload, unpack_cache
from detector.data.archives import ArchiveLimits, check_zip, extract_zip
from detector.data.synthetic import write_synthetic
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


def workspace_listing() -> set[str]:
    """Everything in the workspace except its standing folders (created empty on first use)."""
    standing = {"uploads", "datasets", "runs", "datasets/.unpacked"}
    return {p.relative_to(workspace_root()).as_posix() for p in workspace_root().rglob("*")} - standing


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("evil", ["../escaped.txt", "/tmp/absolute-escape.txt", "images/../../escaped.txt",
                                  "C:\\windows\\escaped.txt"])
def test_zip_slip_refuses_the_whole_archive_and_leaves_nothing(tmp_path, evil):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(zip_bytes({"annotations.json": b"{}", "images/a.png": b"x", evil: b"owned"}))
    before = workspace_listing()
    with pytest.raises(DatasetRefused, match="archive refused"):
        store_upload("evil.zip", archive.read_bytes())
    with pytest.raises(DatasetRefused):
        load_dataset(archive)
    assert workspace_listing() == before
    assert not (tmp_path.parent / "escaped.txt").exists() and not Path("/tmp/absolute-escape.txt").exists()


def test_zip_slip_exits_2_from_validate(tmp_path, capsys):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(zip_bytes({"../x.txt": b"1"}))
    assert cli_main(["validate", str(archive)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "evil.zip" in err and "refused" in err


def test_zip_bomb_is_refused_by_declared_size_and_while_writing(tmp_path, monkeypatch):
    bomb = zip_bytes({"images/zeros.bin": b"\0" * (8 * 1024**2)})  # 8 MiB of zeros compress to ~8 KiB
    assert len(bomb) < 64 * 1024
    monkeypatch.setattr(archives, "MAX_TOTAL_BYTES", 1024**2)  # the cap, lowered so the test stays small
    before = workspace_listing()
    with pytest.raises(DatasetRefused, match="zip bomb"):
        store_upload("bomb.zip", bomb)
    assert workspace_listing() == before
    with zipfile.ZipFile(io.BytesIO(bomb)) as zf:  # a header that lies: counted while writing too
        info = zf.infolist()[0]
    lying = bytearray(bomb)
    # patch the declared uncompressed size (local header offset 22, central directory +24) to 10 bytes
    local = lying.find(b"PK\x03\x04")
    lying[local + 22: local + 26] = struct.pack("<I", 10)
    central = lying.find(b"PK\x01\x02")
    lying[central + 24: central + 28] = struct.pack("<I", 10)
    dest = datasets_dir() / "lying"
    with pytest.raises(DatasetError) as refused:  # zipfile stops at the declared size; the CRC then fails
        archives.extract_zip(bytes(lying), dest, limits=archives.ArchiveLimits(max_total_bytes=1024**2))
    print(refused.value)
    assert not dest.exists() and workspace_listing() == before
    assert info.file_size == 8 * 1024**2


def test_too_many_members_is_refused(monkeypatch):
    monkeypatch.setattr(archives, "MAX_MEMBERS", 5)
    with pytest.raises(DatasetRefused, match="members is over the limit"):
        store_upload("many.zip", zip_bytes({f"f{i}.txt": b"" for i in range(6)}))


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<annotation><filename>&lol9;</filename></annotation>
"""


EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotation><filename>&xxe;</filename></annotation>
"""


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, EXTERNAL], ids=["billion-laughs", "external-entity"])
def test_xml_entity_attacks_are_refused(tmp_path, xml, capsys):
    write_synthetic(tmp_path / "ds", images=2, seed=1, format="voc", width=64, height=48)
    (tmp_path / "ds" / "Annotations" / "evil.xml").write_text(xml)
    with pytest.raises(DatasetRefused, match="evil.xml: XML declares entities"):
        load_dataset(tmp_path / "ds")
    assert cli_main(["validate", str(tmp_path / "ds")]) == 2
    assert "evil.xml" in capsys.readouterr().err
    before = workspace_listing()
    with pytest.raises(DatasetRefused):  # inside an upload: the kept upload and the unpacked files go too
        store_upload("voc.zip", zip_bytes({p.relative_to(tmp_path / "ds").as_posix(): p.read_bytes()
                                           for p in (tmp_path / "ds").rglob("*") if p.is_file()}))
    assert workspace_listing() == before


def test_not_a_zip_or_a_corrupt_zip_is_a_one_line_refusal(tmp_path, capsys):
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 not really a zip")
    assert cli_main(["validate", str(tmp_path / "junk.zip")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert list(uploads_dir().glob("junk*")) == []
