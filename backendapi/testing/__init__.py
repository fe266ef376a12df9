"""A real Backend API server for tests.

`BackendApiTestServer` responds to ``POST /backend-api/v2/conversation`` the way g4f 8.8.6 does,
but with scripted replies, so code using this SDK can be tested against real HTTP on loopback::

    from backendapi.testing import BackendApiTestServer, Reply

    with BackendApiTestServer() as server:
        server.reply(Reply.answer("Hi there", title="Greeting"))
        ...  # point the code under test at server.url
        assert server.requests[0].json["messages"][-1]["content"] == "Hello"

A reply is a list of events plus transport behaviour: SSE or NDJSON framing; chunked,
close-delimited or Content-Length bodies; pauses, points where the test decides when the
stream goes on (`Wait`), a stall until the client gives up (`Hold`), and a connection torn
down mid-body (`Cut`). Every request is recorded as a `RecordedRequest`, multipart uploads
included (`RecordedRequest.files`, `RecordedRequest.form`).

The other endpoints a Backend API server has respond too: ``version``, ``models``,
``models/<provider>``, ``providers``, ``create`` (plain text, see `create_text_reply`) and
``files/<bucket_id>`` (multipart uploads); ``synthesize``, ``quota``, ``health``, ``status``,
``stats``, ``usage``, ``log`` and ``oauth`` answer as g4f's do, scripted on
``server.info`` (`InfoRoutes`, `ScriptedAudio`).

With pytest, enable the ``backendapi_server`` fixture in your ``conftest.py``::

    pytest_plugins = ["backendapi.testing"]

and take it as an argument::

    from backendapi.testing import Reply

    def test_answer(backendapi_server):
        backendapi_server.default_reply = Reply.answer("Hi")
        ...

pytest is only needed for the fixture; the rest of the module works without it.
"""

import contextlib

from ._info import InfoRoutes, ScriptedAudio
from ._recording import RecordedRequest, UploadedFile
from ._replies import Cut, Hold, Pause, Reply, Wait
from ._server import BackendApiTestServer
from ._wire import STREAM_CONTENT_TYPE

__all__ = [
    "STREAM_CONTENT_TYPE",
    "BackendApiTestServer",
    "Cut",
    "Hold",
    "InfoRoutes",
    "Pause",
    "RecordedRequest",
    "Reply",
    "ScriptedAudio",
    "UploadedFile",
    "Wait",
]

# pytest collects fixtures from the namespace of the module named in ``pytest_plugins``,
# so the fixture must be an attribute of this one. pytest is optional: without it there is
# just no fixture.
with contextlib.suppress(ImportError):
    from ._plugin import backendapi_server as backendapi_server
