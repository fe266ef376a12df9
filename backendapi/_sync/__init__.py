"""The blocking client and chat, generated from ``backendapi/_async/`` (``make unasync``)."""
