"""What the environment says about a request: its proxy, ``.netrc`` credentials, CA bundle.

One reading of the process environment, for both transports, with the
stdlib only (the rules ``requests`` and ``aiohttp`` apply when a session
trusts the environment):

- the proxy for an ``http``/``https`` URL from ``urllib.request.getproxies()``
  (``HTTP_PROXY``, ``HTTPS_PROXY``, else ``ALL_PROXY``, lower case first; a
  proxy given without a scheme is ``http://``), unless
  ``urllib.request.proxy_bypass`` says the host bypasses it (``NO_PROXY``;
  an address in one of its ranges, ``10.0.0.0/8``, too);
  an ``https://`` proxy only where the transport can speak TLS to it;
- Basic credentials for the server, or for a proxy given without any, from
  the ``.netrc`` file (``$NETRC``, else ``~/.netrc``);
- the CA bundle to verify with by default, ``REQUESTS_CA_BUNDLE`` else
  ``CURL_CA_BUNDLE`` (requests' rule).

It is read for each request. A transport may keep one reading for requests
started together (the async one keeps it until its event loop's current
iteration ends: ``asyncio.gather`` of 500 streams reads it once); a change to
the environment counts from the next reading on. A reading is cheap where
nothing changed: the variables are looked up again only when ``os.environ``
differs from what it was at the last lookup (one comparison of two dicts, in
C), and the ``.netrc`` file is parsed again only when its path, size,
modification time or inode changes (one ``stat`` per reading). On macOS and
Windows, where ``urllib`` also asks the system's proxy settings, every reading
looks them up.
"""

from __future__ import annotations

import ipaddress
import logging
import netrc
import os
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Dict, Optional, Tuple, Union
from urllib.parse import quote, urlsplit, urlunsplit

from .._errors import InvalidInputError
from .request import basic_authorization

__all__ = ["CA_BUNDLE_ENV", "Environment", "Reading", "Route", "environment_ca_bundle"]

logger = logging.getLogger("backendapi")

CA_BUNDLE_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
"""Variables naming the CA bundle to verify with by default (requests' rule: the first set)."""

_PROXY_SCHEMES = ("http", "https")

# Where urllib's proxies come from the environment alone, a lookup holds while
# os.environ is unchanged (elsewhere urllib also asks the system's settings).
_ENVIRONMENT_ONLY = sys.platform != "darwin" and os.name != "nt"
_NO_HOME = ""  # the .netrc path when no home directory is to be found


def environment_ca_bundle() -> Optional[str]:
    """The CA bundle (file or directory) the environment names for ``ssl=True``, or None.

    Raises :class:`InvalidInputError` naming the variable when the path does
    not exist.
    """
    for name in CA_BUNDLE_ENV:
        path = os.environ.get(name)
        if path:
            if not os.path.exists(path):
                raise InvalidInputError(f"{name}: no such CA bundle: {path!r}")
            return path
    return None


@dataclass
class Route:
    """How one request goes out: through which proxy, with which added headers."""

    proxy: Optional[str] = None
    """The proxy URL (credentials from ``.netrc`` filled in), or None: straight to the server."""
    headers: Dict[str, str] = field(default_factory=dict)
    """Headers to add: an ``Authorization`` from ``.netrc`` for the server."""


class Reading:
    """The environment as read once: proxies and the parsed ``.netrc`` file."""

    __slots__ = ("_bypass", "_networks", "netrc", "proxies", "scope")

    def __init__(
        self,
        scope: object,
        proxies: Dict[str, str],
        netrc_file: Optional[netrc.netrc],
        no_proxy: str = "",
    ) -> None:
        self.scope = scope
        self.proxies = proxies
        self.netrc = netrc_file
        self._bypass: Dict[str, bool] = {}
        # NO_PROXY's address ranges (10.0.0.0/8): requests honours them, urllib does not.
        self._networks = [
            network
            for network in map(_network, no_proxy.replace(" ", "").split(","))
            if network is not None
        ]

    def route(
        self,
        url: str,
        proxy: Optional[str],
        has_authorization: bool,
        proxy_schemes: Collection[str] = _PROXY_SCHEMES,
    ) -> Route:
        """The route of a request to ``url``.

        ``proxy`` is the client's own ``proxy=`` setting, which wins over the
        environment; ``has_authorization``: the request carries an
        ``Authorization`` header of its own, so ``.netrc`` is not consulted
        for the server; ``proxy_schemes``: the proxy URL schemes the transport
        can use (an environment proxy of another scheme is not used).
        """
        route = Route()
        parts = urlsplit(url)
        host = parts.hostname
        if not has_authorization and host:
            credentials = self.credentials(host)
            if credentials is not None:
                route.headers["Authorization"] = basic_authorization(*credentials)
        if proxy is not None:
            route.proxy = proxy
            return route
        found = self.proxies.get(parts.scheme.lower())
        if found is None or (host and self._bypassed(host)):
            return route
        proxy_parts = urlsplit(found if "://" in found else "http://" + found)
        if proxy_parts.scheme.lower() not in proxy_schemes:
            logger.debug(
                "%s proxy %s from the environment is not supported: not used",
                proxy_parts.scheme,
                urlunsplit(proxy_parts._replace(netloc=proxy_parts.netloc.rpartition("@")[2])),
            )
            return route
        if "@" not in proxy_parts.netloc and proxy_parts.hostname:
            # Credentials in the proxy URL become its Proxy-Authorization.
            credentials = self.credentials(proxy_parts.hostname)
            if credentials is not None:
                user, password = (quote(part, safe="") for part in credentials)
                proxy_parts = proxy_parts._replace(netloc=f"{user}:{password}@{proxy_parts.netloc}")
        route.proxy = urlunsplit(proxy_parts)
        return route

    def credentials(self, host: str) -> Optional[Tuple[str, str]]:
        """The ``.netrc`` entry for ``host`` as (user, password), or None."""
        if self.netrc is None:
            return None
        entry = self.netrc.authenticators(host)
        if entry is None:
            return None
        login, account, password = entry
        # Before Python 3.11 an absent login is "" and an absent account None.
        return (login if (login or account is None) else account or ""), password or ""

    def _bypassed(self, host: str) -> bool:
        bypass = self._bypass.get(host)
        if bypass is None:
            bypass = bool(urllib.request.proxy_bypass(host))
            if not bypass and self._networks:
                try:
                    address = ipaddress.ip_address(host)
                except ValueError:
                    pass
                else:
                    bypass = any(address in network for network in self._networks)
            self._bypass[host] = bypass
        return bypass


def _network(entry: str) -> Optional[Union[ipaddress.IPv4Network, ipaddress.IPv6Network]]:
    """``entry`` of NO_PROXY as an address range, if it is one (``10.0.0.0/8``)."""
    if "/" not in entry:
        return None
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


class Environment:
    """Readings of the environment for one client; the ``.netrc`` file parsed once per change."""

    def __init__(self) -> None:
        self._reading: Optional[Reading] = None
        # The last parse of .netrc and the key it was made under (path, mtime, size,
        # inode), as one tuple: threads sharing a transport swap it whole.
        self._netrc_parsed: Tuple[Optional[Tuple[str, int, int, int]], Optional[netrc.netrc]] = (
            None,
            None,
        )
        # The last lookup of the variables (the proxies, NO_PROXY, the .netrc path)
        # and the copy of os.environ it was made under (None: none kept).
        self._looked_up: Optional[Tuple[Dict[Any, Any], Dict[str, str], str, str]] = None

    def read(self, scope: object = None) -> Tuple[Reading, bool]:
        """A reading, and whether it is new.

        With a ``scope`` (any object), the last reading is handed out again
        while it was made for that same scope and :meth:`expire` was not
        called since; without one, every call reads afresh.
        """
        reading = self._reading
        if scope is not None and reading is not None and reading.scope is scope:
            return reading, False
        environ = _environ()
        looked_up = self._looked_up
        if looked_up is None or looked_up[0] != environ:
            looked_up = self._look_up(environ)
        _, proxies, no_proxy, netrc_path = looked_up
        reading = Reading(scope, proxies, self._netrc_file(netrc_path), no_proxy)
        self._reading = reading if scope is not None else None
        return reading, True

    def _look_up(self, environ: Any) -> Tuple[Dict[Any, Any], Dict[str, str], str, str]:
        """Look the variables up; keep what was found with a copy of ``environ``."""
        snapshot = dict(environ)  # first: a change while looking up is seen next time
        found = urllib.request.getproxies()
        # ALL_PROXY stands in for a scheme without its own, as requests reads it.
        proxies = {
            scheme: found.get(scheme) or found["all"]
            for scheme in _PROXY_SCHEMES
            if found.get(scheme) or found.get("all")
        }
        path = os.environ.get("NETRC")
        if path is None:
            try:
                path = str(Path.home() / (".netrc" if os.name != "nt" else "_netrc"))
            except RuntimeError:  # no home directory to be found
                path = _NO_HOME
        looked_up = (snapshot, proxies, found.get("no", ""), path)
        self._looked_up = looked_up if _ENVIRONMENT_ONLY else None
        return looked_up

    def expire(self) -> None:
        """Forget the kept reading: the next :meth:`read` reads afresh."""
        self._reading = None

    def _netrc_file(self, path: str) -> Optional[netrc.netrc]:
        """The parsed ``.netrc`` file at ``path``, or None; parsed again only when it changed."""
        if path == _NO_HOME:
            return None
        try:
            stat = os.stat(path)
        except OSError:
            self._netrc_parsed = (None, None)
            return None
        key = (path, stat.st_mtime_ns, stat.st_size, stat.st_ino)
        seen, parsed = self._netrc_parsed
        if key != seen:
            try:
                parsed = netrc.netrc(path)
            except (netrc.NetrcParseError, OSError) as exc:
                logger.debug("cannot read the .netrc file %s: %s", path, exc)
                parsed = None
            self._netrc_parsed = (key, parsed)
        return parsed


def _environ() -> Any:
    """What ``os.environ`` holds, to compare with a copy: its own dict where it has one
    (CPython's ``_data``: a comparison in C, no decoding), else the mapping itself."""
    return getattr(os.environ, "_data", os.environ)
