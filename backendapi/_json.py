"""The JSON scanner of the decoder's fast path.

``scan_once(text, 0)`` is the stdlib's own C scanner (what ``json.loads``
runs underneath), called directly: it returns ``(value, end)``, or raises
``StopIteration`` (or ``ValueError``) when ``text`` does not start with a JSON
value. The fast path takes its value only when it spans the whole text, which
is then exactly what ``json.loads(text)`` returns; every other text goes to
the decoder's per-line path and ``json.loads`` itself, errors included. This
skips ``json.loads``' Python wrapper, its encoding detection and its two
whitespace matches: most of its cost on a small event.

orjson was measured as the parser of a ``speedups`` extra and did not win
(docs/performance.md): it turns an integer too big for 64 bits into a float,
and the check that keeps such texts from it cost what it saved.
"""

from __future__ import annotations

import json.decoder
from typing import Any, Callable, Tuple

__all__ = ["scan_once"]

scan_once: Callable[[str, int], Tuple[Any, int]] = json.decoder.JSONDecoder().scan_once  # type: ignore[attr-defined]
