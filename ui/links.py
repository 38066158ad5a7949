"""In-app links: the one place that builds a URL to a page of this app.

The URL contract (README, "Links between pages"): query parameters hold names, never paths.
  model=   demo | a builder name | run:<run id> | upload:<file name in workspace/models/>
  device=  auto | cpu | cuda        dataset= <stored dataset name>      run= <run id>
  image=   <image file name exactly as in the dataset's records, e.g. valid/img_028.jpg>
  box=     x1,y1,x2,y2 in original pixels
  sample=  <seed of a sample scene, one of ui.inputs.SAMPLE_SEEDS>
  det=     K, a detection of the image on /rpn's Detections view (its index in model(images)'s
           output; with box=, the detection nearest that box when the index has moved)
Links are relative ("rpn?model=run%3Aabc"), so they work under any server base path; every page
sits one level below the app's root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

from detector import checkpoints, models
from detector.workspace import is_inside, models_dir, runs_dir
from ui.router import PAGES as ROUTER_PAGES

PAGES = tuple(p.url for p in ROUTER_PAGES)  # URL paths of ui.router.PAGES; "" is the home page
RUN_PREFIX, UPLOAD_PREFIX = "run:", "upload:"
DEVICES = ("auto", "cpu", "cuda")


def model_param(source: str | Path) -> str:
    """The URL name of a model source: `demo`, a builder name, `run:<id>` for a run folder (or a
    checkpoint inside one), `upload:<file>` for a file in workspace/models/. Model sources are
    these names already (ui.model); a URL's value is read back by ui.model.offered, which takes
    only the names the picker offers.

    Raises ValueError for a source that has no name under the contract (an arbitrary path)."""
    text = str(source)
    if text == checkpoints.DEMO or text in models.ARCHITECTURES or text.startswith((RUN_PREFIX, UPLOAD_PREFIX)):
        return text
    path = Path(text)
    runs = runs_dir()
    if is_inside(path, runs) and path.resolve() != runs.resolve():
        return RUN_PREFIX + path.resolve().relative_to(runs.resolve()).parts[0]
    if path.parent.resolve() == models_dir().resolve():
        return UPLOAD_PREFIX + path.name
    raise ValueError(f"{text} is not a model this app can name in a link (demo, a builder, a run or an upload)")


def _value(key: str, value: Any) -> str:
    if key == "model":
        return model_param(value)
    if key == "box":
        if isinstance(value, str):
            return value
        return ",".join(f"{float(v):.1f}".rstrip("0").rstrip(".") for v in _four(value))
    if isinstance(value, Path):
        raise ValueError(f"link parameter {key} must be a name, not the path {value}")
    return str(value)


def _four(value: Iterable[Any]) -> list[Any]:
    vals = list(value)
    if len(vals) != 4:
        raise ValueError(f"box must be x1,y1,x2,y2, got {vals}")
    return vals


def page_url(page: str, **params: Any) -> str:
    """A relative link to `page` ("rpn", "/rpn", "home" or "" for the home page) with the given
    query parameters, in the order given; None values are left out. `model=` accepts any model
    source and writes its URL name; `box=` accepts four numbers.

    >>> page_url("rpn", model="demo", dataset="shapes", image="valid/img 1.jpg")
    'rpn?model=demo&dataset=shapes&image=valid/img%201.jpg'
    """
    name = page.strip("/")
    if name == "home":
        name = ""
    if name not in PAGES:
        raise ValueError(f"no page {page!r}; pages: {', '.join(p or 'home' for p in PAGES)}")
    query = "&".join(f"{k}={quote(_value(k, v), safe='/,:')}" for k, v in params.items() if v is not None)
    base = name or "./"
    return f"{base}?{query}" if query else base


def detection_url(model: Any, det: int, box: Iterable[float] | None = None, **image: Any) -> str:
    """/rpn's Detections view with detection `det` explained: `image` names the picture as the URL
    contract does (dataset= and image=, or sample=); `box` (the detection's box, original pixels)
    lets /rpn find it again if its own run orders the detections differently."""
    return page_url("rpn", model=model, **image, box=None if box is None else list(box), view="Detections", det=int(det))


def int_from_param(value: str | None, count: int) -> int | None:
    """An index 0 <= K < count a URL names (`det=K`), or None when absent or not such a number."""
    text = str(value)
    if not (text.isascii() and text.isdigit()) or text != str(int(text)):  # plain decimal digits only: no sign, space or 02
        return None
    k = int(text)
    return k if k < count else None


def box_from_param(value: str | None) -> tuple[float, float, float, float] | None:
    """The box a URL `box=x1,y1,x2,y2` names (original pixels), or None when absent or malformed."""
    if not value:
        return None
    try:
        x1, y1, x2, y2 = (float(v) for v in str(value).split(","))
    except ValueError:
        return None
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None
