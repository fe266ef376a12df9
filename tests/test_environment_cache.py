"""The reading of the environment is cheap where nothing changed, and sees every change.

Each request reads the environment (proxies, ``NO_PROXY``, ``.netrc``); a web app's
thousands of requests must not each look every variable up and parse a file. The
core looks the variables up again only when ``os.environ`` changed, and parses
``.netrc`` again only when its stat (path, size, modification time, inode) did.
These tests count the look-ups and parses, and check that the next reading after
each kind of change sees it. End to end, over both clients, see
``test_network_proxies_and_environment.py``.
"""

from __future__ import annotations

import netrc
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

import pytest

from backendapi._core import environment
from backendapi._core.environment import Environment, Reading

URL = "http://backend.test/backend-api/v2/conversation"

pytestmark = pytest.mark.skipif(
    sys.platform == "darwin" or os.name == "nt",
    reason="urllib asks the system's proxy settings there: every reading looks them up",
)


class Counts:
    def __init__(self) -> None:
        self.lookups = 0
        self.parses = 0


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Counts:
    """No proxy variables, NETRC naming a file not made yet; look-ups and parses counted."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    found = Counts()
    getproxies = urllib.request.getproxies
    parse = netrc.netrc

    def counting_getproxies() -> Dict[str, str]:
        found.lookups += 1
        return getproxies()

    def counting_parse(*args: Any) -> netrc.netrc:
        found.parses += 1
        return parse(*args)

    monkeypatch.setattr(urllib.request, "getproxies", counting_getproxies)
    monkeypatch.setattr(environment.netrc, "netrc", counting_parse)
    return found


def proxy(reading: Reading) -> Any:
    return reading.route(URL, None, False).proxy


def authorization(reading: Reading) -> Any:
    return reading.route(URL, None, False).headers.get("Authorization")


def test_an_unchanged_environment_is_looked_up_once(counts: Counts, tmp_path: Path) -> None:
    (tmp_path / "netrc").write_text("machine backend.test login me password pw\n")
    env = Environment()
    readings = [env.read()[0] for _ in range(50)]
    assert (counts.lookups, counts.parses) == (1, 1)
    assert all(authorization(reading) == "Basic bWU6cHc=" for reading in readings)
    # Every reading without a scope is still a new one (the async transport's scope rule).
    assert all(env.read()[1] for _ in range(3))


def test_a_variable_set_changed_and_removed_is_seen_by_the_next_reading(
    counts: Counts, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = Environment()
    assert proxy(env.read()[0]) is None
    monkeypatch.setenv("HTTP_PROXY", "http://one.test:3128")
    assert proxy(env.read()[0]) == "http://one.test:3128"
    monkeypatch.setenv("HTTP_PROXY", "http://two.test:3128")
    assert proxy(env.read()[0]) == "http://two.test:3128"
    monkeypatch.setenv("NO_PROXY", "backend.test")
    assert proxy(env.read()[0]) is None
    monkeypatch.delenv("NO_PROXY")
    assert proxy(env.read()[0]) == "http://two.test:3128"
    monkeypatch.delenv("HTTP_PROXY")
    assert proxy(env.read()[0]) is None
    assert counts.lookups == 6  # one per change, none more
    env.read()
    assert counts.lookups == 6


def test_an_unrelated_variable_changed_is_seen_as_a_change(
    counts: Counts, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Any change makes a new look-up: the comparison is of the whole environment.
    env = Environment()
    env.read()
    monkeypatch.setenv("BACKENDAPI_TEST_UNRELATED", "1")
    env.read()
    env.read()
    assert counts.lookups == 2


def test_netrc_created_edited_and_deleted_is_seen_by_the_next_reading(
    counts: Counts, tmp_path: Path
) -> None:
    path = tmp_path / "netrc"
    env = Environment()
    assert authorization(env.read()[0]) is None
    path.write_text("machine backend.test login me password pw\n")
    assert authorization(env.read()[0]) == "Basic bWU6cHc="
    assert counts.parses == 1
    path.write_text("machine backend.test login me password longer\n")  # another size
    assert authorization(env.read()[0]) == "Basic bWU6bG9uZ2Vy"
    stat = path.stat()
    path.write_text("machine backend.test login me password longgg\n")  # the same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert authorization(env.read()[0]) == "Basic bWU6bG9uZ2dn"
    assert counts.parses == 3
    env.read()
    assert counts.parses == 3  # unchanged: not parsed again
    path.unlink()
    assert authorization(env.read()[0]) is None
    path.write_text("machine backend.test login me password pw\n")
    assert authorization(env.read()[0]) == "Basic bWU6cHc="
    assert counts.lookups == 1  # the variables never changed


def test_netrc_replaced_by_another_file_is_seen(counts: Counts, tmp_path: Path) -> None:
    path = tmp_path / "netrc"
    path.write_text("machine backend.test login me password pw\n")
    env = Environment()
    assert authorization(env.read()[0]) == "Basic bWU6cHc="
    stat = path.stat()
    other = tmp_path / "other"
    other.write_text("machine backend.test login me password qq\n")
    os.utime(other, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and time
    other.replace(path)  # a new inode under the same name
    assert authorization(env.read()[0]) == "Basic bWU6cXE="


def test_netrc_named_by_another_variable_value_is_seen(
    counts: Counts, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "netrc").write_text("machine backend.test login me password pw\n")
    (tmp_path / "second").write_text("machine backend.test login you password pw\n")
    env = Environment()
    assert authorization(env.read()[0]) == "Basic bWU6cHc="
    monkeypatch.setenv("NETRC", str(tmp_path / "second"))
    assert authorization(env.read()[0]) == "Basic eW91OnB3"
    monkeypatch.delenv("NETRC")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".netrc").write_text("machine backend.test login home password pw\n")
    assert authorization(env.read()[0]) == "Basic aG9tZTpwdw=="


def test_a_reading_keeps_what_it_was_made_with(
    counts: Counts, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Readings share the looked-up values: a later change must not reach an earlier one.
    env = Environment()
    monkeypatch.setenv("HTTP_PROXY", "http://one.test:3128")
    first = env.read()[0]
    monkeypatch.setenv("HTTP_PROXY", "http://two.test:3128")
    second = env.read()[0]
    assert [proxy(first), proxy(second)] == ["http://one.test:3128", "http://two.test:3128"]


def test_threads_sharing_an_environment_see_the_same_values(counts: Counts) -> None:
    import threading

    env = Environment()
    seen: List[Any] = []
    barrier = threading.Barrier(8)

    def read() -> None:
        barrier.wait()
        for _ in range(200):
            seen.append(proxy(env.read()[0]))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [None] * 1600
