"""A short multi-turn chat from a plain script, each answer printed as it arrives.

``Chat`` keeps the history: the second question ("How high is it?") only makes
sense because the first question and its answer travel with it.

Run it against a server given as the argument, else ``BACKENDAPI_BASE_URL``::

    python examples/chat_script.py http://localhost:8080 --model gpt-4o --provider OpenaiChat
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from backendapi import BackendApiClient, BackendApiError, Chat

QUESTIONS = [
    "What is the highest mountain on Earth?",
    "How high is it?",
]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="A two-turn chat, streamed.")
    parser.add_argument("base_url", nargs="?", help="the server (default: $BACKENDAPI_BASE_URL)")
    parser.add_argument("--model", default="", help="model id (default: the server picks)")
    parser.add_argument("--provider", help="provider name, e.g. OpenaiChat")
    args = parser.parse_args(argv)

    try:
        with BackendApiClient(args.base_url) as client:
            chat = Chat(client, args.model, provider=args.provider, system="Answer briefly.")
            for question in QUESTIONS:
                print(f"> {question}")
                # The history is updated once the stream has been read to its end.
                with chat.send(question) as stream:
                    for event in stream:
                        if event.type == "content":
                            print(event.content, end="", flush=True)
                print()
            print(f"({len(chat.messages)} messages in the conversation)")
    except BackendApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
