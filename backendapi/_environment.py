"""The environment an async client's own session obeys: proxies and ``.netrc``.

aiohttp reads the same things when a session has ``trust_env=True``, but does
two worker-thread round trips on every request to do it (the ``.netrc`` file
and the proxy variables), which made 500 concurrent streams spend more time
on the environment than on their events. The client's own session is made
with ``trust_env=False`` and gets the answers from here instead, read with
the stdlib as aiohttp reads them:

- the proxy for an ``http``/``https`` URL from ``urllib.request.getproxies()``
  (``HTTP_PROXY``, ``HTTPS_PROXY``, else ``ALL_PROXY``, lower case first),
  unless ``urllib.request.proxy_bypass`` says the host bypasses it
  (``NO_PROXY``); an ``https://`` proxy only from Python 3.11 on (asyncio
  runs TLS inside TLS from then), a proxy of another scheme never;
- Basic credentials for the server, or for a proxy given without any, from
  the ``.netrc`` file (``$NETRC``, else ``~/.netrc``).

What is read is kept until the event loop's current iteration ends, so
requests started together (``asyncio.gather``) share one reading and a change
to the environment counts from the next iteration on. The ``.netrc`` file is
parsed again only when its size or modification time changes.
"""

from __future__ import annotations

import asyncio
import logging
import netrc
import os
import sys
import urllib.request
from pathlib import Path
from typing import Dict, Optional, Tuple
from urllib.parse import urlsplit

from yarl import URL

from ._request import basic_authorization

__all__ = ["Environment"]

logger = logging.getLogger("backendapi")

_PROXY_SCHEMES = ("http", "https")
# An https:// proxy needs TLS inside TLS for https:// servers, which asyncio has from
# Python 3.11 on (aiohttp then supports it); before, such a proxy is not used.
_PROXY_URL_SCHEMES = ("http", "https") if sys.version_info >= (3, 11) else ("http",)


class _Reading:
    """The environment as read in one event-loop iteration."""

    __slots__ = ("bypass", "loop", "netrc", "proxies")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        proxies: Dict[str, str],
        netrc_file: Optional[netrc.netrc],
    ) -> None:
        self.loop = loop
        self.proxies = proxies
        self.netrc = netrc_file
        self.bypass: Dict[str, bool] = {}


class Environment:
    """Proxy and credentials for each request of one client's own session."""

    def __init__(self) -> None:
        self._reading: Optional[_Reading] = None
        self._netrc_key: Optional[Tuple[str, int, int, int]] = None
        self._netrc: Optional[netrc.netrc] = None

    def request_options(
        self, url: str, proxy: Optional[str], has_authorization: bool
    ) -> Tuple[Dict[str, object], Dict[str, str]]:
        """Options for ``session.request(url, ...)``, and headers to add to its own.

        ``proxy`` is the client's own ``proxy=`` setting, which wins over the
        environment; ``has_authorization``: the request carries an
        ``Authorization`` header of its own, so ``.netrc`` is not consulted
        for the server.
        """
        reading = self._read()
        options: Dict[str, object] = {}
        headers: Dict[str, str] = {}
        parts = urlsplit(url)
        host = parts.hostname
        if not has_authorization and host:
            credentials = _netrc_credentials(reading.netrc, host)
            if credentials is not None:
                headers["Authorization"] = basic_authorization(*credentials)
        if proxy is not None:
            options["proxy"] = proxy
            return options, headers
        found = reading.proxies.get(parts.scheme.lower())
        if found is None or (host and self._bypassed(reading, host)):
            return options, headers
        proxy_url = URL(found)
        if proxy_url.scheme not in _PROXY_URL_SCHEMES:
            logger.debug(
                "%s proxy %s from the environment is not supported: not used",
                proxy_url.scheme,
                proxy_url.with_user(None),
            )
            return options, headers
        if proxy_url.user is None and proxy_url.password is None and proxy_url.host:
            # Credentials in the proxy URL become its Proxy-Authorization (aiohttp).
            credentials = _netrc_credentials(reading.netrc, proxy_url.host)
            if credentials is not None:
                proxy_url = proxy_url.with_user(credentials[0]).with_password(credentials[1])
        options["proxy"] = proxy_url
        return options, headers

    def _read(self) -> _Reading:
        reading = self._reading
        loop = asyncio.get_running_loop()
        # A loop stopped before running _forget (a client used under one
        # asyncio.run, then another) must not hand its reading to the next.
        if reading is None or reading.loop is not loop:
            proxies = urllib.request.getproxies()
            reading = _Reading(
                loop,
                # ALL_PROXY stands in for a scheme without its own, as requests reads it.
                {
                    scheme: proxies.get(scheme) or proxies["all"]
                    for scheme in _PROXY_SCHEMES
                    if proxies.get(scheme) or proxies.get("all")
                },
                self._netrc_file(),
            )
            self._reading = reading
            loop.call_soon(self._forget)
        return reading

    def _forget(self) -> None:
        self._reading = None

    @staticmethod
    def _bypassed(reading: _Reading, host: str) -> bool:
        bypass = reading.bypass.get(host)
        if bypass is None:
            bypass = reading.bypass[host] = bool(urllib.request.proxy_bypass(host))
        return bypass

    def _netrc_file(self) -> Optional[netrc.netrc]:
        """The parsed ``.netrc`` file, or None; parsed again only when it changed."""
        path = os.environ.get("NETRC")
        if path is None:
            try:
                path = str(Path.home() / (".netrc" if os.name != "nt" else "_netrc"))
            except RuntimeError:  # no home directory to be found
                return None
        try:
            stat = os.stat(path)
        except OSError:
            self._netrc_key, self._netrc = None, None
            return None
        key = (path, stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if key != self._netrc_key:
            self._netrc_key = key
            try:
                self._netrc = netrc.netrc(path)
            except (netrc.NetrcParseError, OSError) as exc:
                logger.debug("cannot read the .netrc file %s: %s", path, exc)
                self._netrc = None
        return self._netrc


def _netrc_credentials(netrc_file: Optional[netrc.netrc], host: str) -> Optional[Tuple[str, str]]:
    """The ``.netrc`` entry for ``host`` as (user, password), as aiohttp reads it."""
    if netrc_file is None:
        return None
    entry = netrc_file.authenticators(host)
    if entry is None:
        return None
    login, account, password = entry
    # Before Python 3.11 an absent login is "" and an absent account None.
    return (login if (login or account is None) else account or ""), password or ""
