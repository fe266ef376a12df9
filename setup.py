"""Build script: the metadata lives in setup.cfg; this adds the optional C part.

``backendapi._batches`` (``backendapi/_batches.c``) makes the streams hand
out events faster. It is optional: where it cannot be built (no C compiler,
not CPython) the install goes on without it and the package runs the same
steps in Python, with the same results. Set ``BACKENDAPI_NO_EXTENSIONS=1`` to
install without it on purpose.
"""

import os
import platform

from setuptools import Extension, setup


def extensions() -> list:
    if platform.python_implementation() != "CPython":
        return []
    if os.environ.get("BACKENDAPI_NO_EXTENSIONS", "").strip() not in ("", "0"):
        return []
    return [Extension("backendapi._batches", ["backendapi/_batches.c"], optional=True)]


setup(ext_modules=extensions())
