"""Export a model from a page: TorchScript or ONNX, checked when made (detector.export), then downloaded.

The export runs when the user asks (a button), in the workspace's exports/ folder; the file is
offered for download and kept for the session per (model, its checkpoint's mtime, format, size).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from detector.export import DEFAULT_IMAGE_SIZE, EXPORT_FORMATS, ExportError, ExportResult, export_model
from detector.workspace import workspace_root
from ui.model import get_model, model_key

_DONE = "model_exports"


def _exports_dir() -> Path:
    folder = workspace_root() / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _file_name(label: str, fmt: str, size: tuple[int, int]) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:60] or "model"
    return f"{stem}_{size[0]}x{size[1]}.onnx" if fmt == "onnx" else f"{stem}.torchscript.pt"


def render_export(source: str, label: str, key: str) -> None:
    """Format and size pickers, an Export button, and the download of the checked file."""
    c1, c2, c3 = st.columns([1, 1, 1])
    fmt = c1.radio("Format", EXPORT_FORMATS, horizontal=True, key=f"{key}_format",
                   format_func=lambda f: {"torchscript": "TorchScript", "onnx": "ONNX"}[f],
                   help="TorchScript: torch.jit.script, any image size. ONNX: one fixed input size, opset 17, "
                        "checked with onnxruntime.")
    width = c2.number_input("Width", 64, 4096, DEFAULT_IMAGE_SIZE[0], 32, key=f"{key}_width",
                            help="ONNX input width; the check image's width for both formats.")
    height = c3.number_input("Height", 64, 4096, DEFAULT_IMAGE_SIZE[1], 32, key=f"{key}_height")
    size = (int(width), int(height))
    done: dict[str, ExportResult] = st.session_state.setdefault(_DONE, {})
    slot = f"{model_key(source)}|{fmt}|{size}"
    if st.button("Export and check", key=f"{key}_go", icon=":material/output:",
                 help="Writes the file, runs it on a sample image and compares its detections with PyTorch's."):
        loaded = get_model(source, "cpu")
        with st.spinner(f"Exporting to {fmt} and checking it ..."):
            try:
                done[slot] = export_model(loaded, fmt, _exports_dir() / _file_name(label, fmt, size), size)
            except ExportError as exc:
                st.error(str(exc))
    result = done.get(slot)
    if result is None or not result.path.is_file():
        return
    st.success(f"Checked: {result.check.message}.", icon=":material/verified:")
    d1, d2 = st.columns(2)
    d1.download_button(f"{result.path.name} ({result.size_bytes / 1e6:.1f} MB)", result.path.read_bytes(),
                       result.path.name, "application/octet-stream", key=f"{key}_download")
    if result.sidecar is not None:
        d2.download_button(f"Class names ({result.sidecar.name})", result.sidecar.read_text(), result.sidecar.name,
                           "application/json", key=f"{key}_sidecar")
    else:
        d2.caption("Class names and input size are in the ONNX file's metadata_props.")
