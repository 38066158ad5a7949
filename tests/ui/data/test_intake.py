"""ui.data.intake: a folder upload's content key and name hint."""

from __future__ import annotations

from ui.data.intake import folder_upload_key


def test_folder_upload_key_follows_the_content_not_the_order():
    files = {"shapes/images/a.png": b"a", "shapes/labels/a.txt": b"0 0.5 0.5 0.1 0.1\n"}
    key, hint = folder_upload_key(files, "yolo")
    assert hint == "shapes"
    assert folder_upload_key(dict(reversed(list(files.items()))), "yolo")[0] == key
    assert folder_upload_key({**files, "shapes/labels/a.txt": b""}, "yolo")[0] != key
    assert folder_upload_key(files, "coco")[0] != key  # stored once per format
    assert folder_upload_key({"a.png": b"a"}, "auto")[1] == "folder-upload"
