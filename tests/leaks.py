"""What garbage collection finds left open: `recorded_leaks`, behind the ``no_leaks`` fixture.

``-W error::ResourceWarning`` alone does not fail a test that leaks: a warning raised in
``__del__`` is only reported by pytest as unraisable, and it can surface in a later test.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import warnings
from typing import Iterator, List


def _is_leak(warning: warnings.WarningMessage) -> bool:
    # aiohttp's "Unclosed client session/connector/response" are ResourceWarnings too.
    return issubclass(warning.category, ResourceWarning)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def recorded_leaks() -> Iterator[List[str]]:
    """Collect what garbage collection reports as leaked in the block: ResourceWarnings
    (unclosed sockets, transports, aiohttp responses, sessions and connectors) and the
    "Unclosed ..." errors aiohttp hands to the event loop's exception handler, which asyncio
    logs. The list is filled when the block ends, after a ``gc.collect()``.

    A warning raised in ``__del__`` is only reported by pytest as unraisable, and it can
    surface in a later test; recording it here pins it on the test that caused it.
    """
    handler = _Records()
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(handler)
    leaks: List[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            # Only ResourceWarnings change filter: others keep pytest's (an exception in a
            # __del__ still fails the test as PytestUnraisableExceptionWarning).
            warnings.simplefilter("always", ResourceWarning)
            try:
                yield leaks
            finally:
                gc.collect()
        leaks += [str(warning.message) for warning in caught if _is_leak(warning)]
        leaks += [
            record.getMessage()
            for record in handler.records
            if "unclosed" in record.getMessage().lower()
        ]
        # Hand any other warning on to pytest, as if this block had not recorded it.
        for warning in caught:
            if not _is_leak(warning):
                warnings.warn_explicit(
                    warning.message, warning.category, warning.filename, warning.lineno
                )
    finally:
        asyncio_logger.removeHandler(handler)
