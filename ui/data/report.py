"""The validation report of a stored dataset on the data page: counts, usability and split, the VOC
convention (with a re-read), notes, ignored files, the filterable problem table, decoding every image
and the report as JSON."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from detector.data import StoredDataset
from detector.data.records import VOC_CONVENTIONS, Problem
from detector.data.validation import action_kind, kind_of_action
from detector.wording import counted
from ui.data.stored import decoding_problems, reread_voc

PROBLEM_COLUMNS = ["severity", "file", "line", "id", "message", "action"]


def problems_table(problems: list[Problem]) -> pd.DataFrame:
    """One row per problem, in the columns of the validation report."""
    return pd.DataFrame([p.to_dict() for p in problems], columns=PROBLEM_COLUMNS)


def filter_problems(table: pd.DataFrame, severities: list[str], kinds: list[str], search: str) -> pd.DataFrame:
    """The rows of a problems_table with one of these severities and action kinds whose file or message
    contains search (case-insensitive; empty: all), ready to show."""
    shown = table[table["severity"].isin(severities)
                  & table["action"].map(kind_of_action).isin(kinds)]
    if search:
        text = shown["file"].fillna("") + " " + shown["message"]
        shown = shown[text.str.contains(search, case=False, regex=False)]
    return shown.astype({"line": "Int64"}).astype({"id": "string"})


def render_report(name: str, sd: StoredDataset) -> None:
    """The 'Validation report' section of stored dataset `name`."""
    ds = sd.dataset
    report = ds.report()
    st.header("Validation report")
    m = st.columns(6)
    m[0].metric("Format", ds.format.upper())
    m[1].metric("Images", report["images"])
    m[2].metric("Boxes", report["boxes"])
    m[3].metric("Empty images", report["empty_images"], help="Kept as negatives: they teach the background class.")
    m[4].metric("Classes", len(ds.class_names))
    m[5].metric("Problems", len(ds.problems))
    if report["usable"]:
        st.success(f"Usable for training. Split: {len(sd.train_indices)} train / {len(sd.val_indices)} validation "
                   "images.", icon=":material/check_circle:")
    else:
        st.error("Not usable as it is: fix the errors listed below.", icon=":material/error:")
    st.caption("Classes in label order (label id = position, 0 is background): "
               + ", ".join(f"{i + 1} {n}" for i, n in enumerate(ds.class_names)))
    if ds.voc_coordinates:
        convention, why = ds.voc_coordinates
        v1, v2 = st.columns([1, 3])
        chosen = v1.selectbox("Read VOC boxes as", list(VOC_CONVENTIONS), index=VOC_CONVENTIONS.index(convention),
                              key=f"data_voc_read_{name}", help="Parse the files again with this convention.")
        v2.info(f"VOC coordinates: {why}", icon=":material/straighten:")
        if chosen != convention:
            error = reread_voc(name, chosen)
            if error:
                st.error(error)
            else:
                st.rerun()
    for note in ds.notes:
        st.info(note, icon=":material/info:")
    if ds.ignored_files:
        with st.expander(f"{counted(len(ds.ignored_files), 'annotation file')} read and not used"):
            st.dataframe(pd.DataFrame([f.to_dict() for f in ds.ignored_files]), hide_index=True, width="stretch",
                         key="data_ignored")
    _problems(ds.problems)
    _decoding(name, len(ds.records))
    st.download_button("Report as JSON", json.dumps(report, indent=2), f"{name}-report.json", "application/json",
                       key="data_report_download")


def _problems(found: list) -> None:
    """The problem table with its severity, action and text filters."""
    problems = problems_table(found)
    if not len(problems):
        st.caption("No problems found.")
        return
    f1, f2, f3 = st.columns([1, 1, 2])
    severities = f1.multiselect("Severity", ["error", "warning"], default=["error", "warning"], key="data_severity")
    kinds = sorted({action_kind(p) for p in found})
    chosen_kinds = f2.multiselect("Action", kinds, default=kinds, key="data_action")
    search = f3.text_input("Search file or message", key="data_search")
    shown = filter_problems(problems, severities, chosen_kinds, search)
    st.dataframe(shown, hide_index=True, width="stretch", height=min(400, 38 + 35 * len(shown)), key="data_problems")
    st.caption(f"{len(shown)} of {len(problems)} problems. Training applies each action exactly as listed and "
               "records it in the run.")


def _decoding(name: str, n_images: int) -> None:
    """'Decode every image' (once asked, kept for this dataset in the session) and what it found."""
    if st.button("Decode every image", key="data_decode",
                 help="Parsing read only image headers. Decoding finds truncated or corrupt pixel data; "
                      "training leaves such images out and records it."):
        st.session_state[f"data_decoded_{name}"] = True
    if st.session_state.get(f"data_decoded_{name}"):
        with st.spinner(f"Decoding {counted(n_images, 'image')} ..."):
            late = decoding_problems(name)
        if late:
            st.warning(f"{counted(len(late), 'image')} {'fails' if len(late) == 1 else 'fail'} to decode and will be left out of training.")
            st.dataframe(pd.DataFrame([p.to_dict() for p in late]).astype({"id": "string"}), hide_index=True,
                         width="stretch")
        else:
            st.success("The image decodes." if n_images == 1 else f"All {n_images} images decode.", icon=":material/check_circle:")
