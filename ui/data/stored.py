"""The data page's stored datasets, cached per version of their dataset.json: parsed, their
statistics and problems by record, the problems found by decoding every image (slow), and a VOC
dataset parsed again with its coordinate convention forced."""

from __future__ import annotations

import streamlit as st

from detector.data import DatasetError, StoredDataset, open_dataset
from detector.data.stats import DatasetStatistics, dataset_statistics
from detector.data.store import reread
from detector.data.validation import problems_by_record
from detector.workspace import datasets_dir


def _stamp(name: str) -> float:
    path = datasets_dir() / name / "dataset.json"
    return path.stat().st_mtime if path.is_file() else 0.0


@st.cache_resource(show_spinner=False, max_entries=8)
def _open(name: str, stamp: float) -> StoredDataset:
    return open_dataset(name)


def stored(name: str) -> StoredDataset:
    """A stored dataset, parsed once per version of its dataset.json."""
    return _open(name, _stamp(name))


@st.cache_resource(show_spinner=False, max_entries=8)
def _stats(name: str, stamp: float) -> tuple[DatasetStatistics, dict]:
    ds = _open(name, stamp).dataset
    return dataset_statistics(ds), problems_by_record(ds)


def statistics(name: str) -> tuple[DatasetStatistics, dict]:
    """(statistics, record index -> problems) of a stored dataset, cached."""
    return _stats(name, _stamp(name))


def reread_voc(name: str, convention: str) -> str | None:
    """Parse a stored VOC dataset again with the coordinate convention forced; the error, if any."""
    try:
        reread(name, voc_coordinates=convention)
    except DatasetError as exc:
        return str(exc)
    return None


@st.cache_resource(show_spinner=False, max_entries=8)
def _decoded(name: str, stamp: float) -> list:
    from detector.data.validation import decode_problems

    return decode_problems(_open(name, stamp).dataset)


def decoding_problems(name: str) -> list:
    """Problems found by decoding every image of a stored dataset (slow; cached per version)."""
    return _decoded(name, _stamp(name))
