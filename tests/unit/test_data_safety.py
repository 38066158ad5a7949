"""Hostile input is refused without writing outside the workspace or exhausting memory: zip-slip,
zip bombs, decompression-bomb images, XML entity attacks. A refused archive leaves nothing behind."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from detector.cli import main as cli_main
from detector.data import DatasetError, DatasetRefused, load_dataset, store_upload
from detector.data import archives
from detector.data.synthetic import write_synthetic
from detector.workspace import datasets_dir, uploads_dir, workspace_root


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


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with almost no pixel data (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


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


def test_decompression_bomb_image_is_left_out_by_its_header(tmp_path):
    write_synthetic(tmp_path, images=2, seed=1, format="yolo", width=64, height=48)
    (tmp_path / "images" / "bomb.png").write_bytes(png_header_only(40_000, 40_000))  # 1.6 gigapixels
    ds = load_dataset(tmp_path)
    bomb = [p for p in ds.problems if p.file == "images/bomb.png"]
    assert len(bomb) == 1 and bomb[0].action == "image left out" and "large" in bomb[0].message
    assert len(ds.records) == 2 and ds.usable
    over_limit = tmp_path / "images" / "bomb.png"
    over_limit.write_bytes(png_header_only(10_000, 6_000))  # 60 MP: under PIL's guard, over ours
    ds = load_dataset(tmp_path)
    assert any(p.file == "images/bomb.png" and "over the limit" in p.message for p in ds.problems)


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
