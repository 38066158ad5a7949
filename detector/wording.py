"""How the app and the command line write a count of things: "1 class", "3 classes", "0 images".

One rule everywhere a count is printed (pages, captions, messages, the CLI), instead of "1 classes"
or a hedging "image(s)".
"""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun, singular for exactly 1.

    The plural is `plural` when given, else the noun with "es" after s, x or sh ("classes", "boxes")
    and "s" after anything else ("epochs", "detections")."""
    if n == 1:
        return f"1 {noun}"
    if plural is None:
        plural = noun + ("es" if noun.endswith(("s", "x", "sh")) else "s")
    return f"{n} {plural}"
