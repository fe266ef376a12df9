"""Record a real g4f 8.8.6 GUI backend's answers to the provider and bookkeeping routes.

Run with Flask installed (a scratch virtualenv, never this project's), from the root:

    python scripts/record_info_routes.py <g4f 8.8.6 source> tests/data/g4f-8.8.6-info-routes

It needs no network: g4f's live provider list is seeded with one entry so that it is not
fetched, and the requests go through Flask's test client to ``g4f.gui.get_gui_app()``.
Each answer is written as ``{"request", "status", "content_type", "body"}``, the body parsed
when it is JSON.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import sys
import tempfile
from typing import Any


def main(source: str, out: str) -> None:
    os.environ["HOME"] = tempfile.mkdtemp()
    os.environ["G4F_CACHE_DIR"] = cache = tempfile.mkdtemp()
    today = datetime.date.today().strftime("%Y-%m-%d")
    seed = pathlib.Path(cache, ".models", today, "providers.json")
    seed.parent.mkdir(parents=True)
    live = {"providers": {"default": {"baseUrl": "http://127.0.0.1:9/v1"}}, "defaultModels": {}}
    seed.write_text(json.dumps(live))
    sys.path.insert(0, source)
    from g4f.gui import get_gui_app

    client = get_gui_app().test_client()
    folder = pathlib.Path(out)
    folder.mkdir(parents=True, exist_ok=True)

    def record(name: str, method: str, path: str, **kwargs: Any) -> None:
        response = getattr(client, method)(path, **kwargs)
        content_type = response.headers.get("Content-Type", "")
        raw = response.get_data()
        body: Any = raw.decode("utf-8")
        if content_type.startswith("application/json"):
            body = json.loads(raw)
        request: dict[str, Any] = {"method": method.upper(), "path": path}
        request.update({key: kwargs[key] for key in ("json", "headers") if key in kwargs})
        document = {
            "request": request,
            "status": response.status_code,
            "content_type": content_type,
            "body": body,
        }
        text = json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False)
        (folder / f"{name}.json").write_text(text + "\n", encoding="utf-8")

    v2 = "/backend-api/v2"
    record("quota-of-an-unknown-provider", "get", f"{v2}/quota/NoSuchProvider")
    record("health-of-an-unknown-provider", "get", f"{v2}/health/NoSuchProvider")
    record("synthesize-with-an-unknown-provider", "get", f"{v2}/synthesize/NoSuchProvider")
    record("quota-not-supported", "get", f"{v2}/quota/OpenaiChat")
    record("health-not-supported", "get", f"{v2}/health/OpenaiChat")
    record("quota-without-a-key", "get", f"{v2}/quota/OpenRouter")
    record("health-without-a-key", "get", f"{v2}/health/OpenRouter")
    key = {"x-api-key": "sk-recorded-key"}
    record("health-of-an-unreachable-provider", "get", f"{v2}/health/OpenRouter", headers=key)
    record("synthesize-not-supported", "get", f"{v2}/synthesize/PollinationsAI")
    record("synthesize-without-its-text", "get", f"{v2}/synthesize/Gemini")
    record("oauth-of-an-unknown-provider", "get", f"{v2}/oauth/NoSuchProvider")
    record("oauth-not-supported", "get", f"{v2}/oauth/PollinationsAI")
    record("status", "get", f"{v2}/status")
    record("stats-with-no-usage", "get", f"{v2}/stats")
    record("log-with-no-lines", "get", f"{v2}/log")
    record("usage-of-a-malformed-date", "get", f"{v2}/usage/yesterday")
    record("usage-of-an-impossible-date", "get", f"{v2}/usage/2024-13-01")
    record("usage-of-a-date-without-usage", "get", f"{v2}/usage/2024-01-01")
    usage = {"model": "scripted-1", "provider": "ScriptedProvider", "prompt_tokens": 3}
    usage["completion_tokens"] = 4
    record("usage-recorded", "post", f"{v2}/usage", json=usage, headers={"x-user": "me"})
    record("usage-of-today", "get", f"{v2}/usage/{today}")
    record("stats-after-usage", "get", f"{v2}/stats")
    line = {"type": "error", "message": "boom"}
    record("log-line-recorded", "post", f"{v2}/log", json=line)
    record("log-after-a-line", "get", f"{v2}/log")
    record("log-with-a-malformed-limit", "get", f"{v2}/log?limit=many")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
