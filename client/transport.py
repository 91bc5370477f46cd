"""The client's HTTP transport: urllib3, set up once for the API's URL.

What the environment says for that URL (proxies and ``NO_PROXY``, the CA bundle, a ``.netrc``
entry) is read once, when the client is made, the way requests reads it (its
``merge_environment_settings``, ``select_proxy`` and ``get_netrc_auth``). Each call then goes
straight to urllib3's connection pool: a requests ``Session`` spent about 0.7 to 0.9 ms of CPU a
call preparing and merging what is the same for every call (against the API's ``/health``, in one
run: 1.98 ms a call through a session, 1.27 ms through urllib3's pool manager, 1.09 ms on a raw
``http.client`` connection), CPU a worker's training thread shares.

Unlike a requests ``Session``, the transport keeps no cookies and follows no redirects: the API
sets neither, and a redirect (an ingress sending ``http`` to ``https``, say) is answered to the
caller, who should use the URL it names.
"""

from __future__ import annotations

import json as json_module
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
import urllib3
from requests.utils import (
    DEFAULT_CA_BUNDLE_PATH,
    get_auth_from_url,
    get_netrc_auth,
    select_proxy,
    urldefragauth,
)

USER_AGENT = "hpo-client"
POOL_SIZE = 10  # connections kept, as requests keeps: a worker calls from several threads


class ServiceUnreachable(ConnectionError):
    """No usable answer came from the API (refused, reset, timed out, or not the JSON it sends),
    after the retries the call allows. The underlying error is its ``reason``."""

    def __init__(self, reason: Exception, said: str | None = None) -> None:
        super().__init__(said or f"the service did not answer: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: its status and body."""

    status: int
    content: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json_module.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class Transport:
    """Calls below one base URL through a thread-safe keep-alive pool (urllib3's)."""

    def __init__(self, url: str, token: str | None, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        settings = requests.Session().merge_environment_settings(self.url, {}, None, None, None)
        proxy = select_proxy(self.url, settings["proxies"])
        self.proxy = None if proxy is None else _with_scheme(proxy)
        verify = True if settings["verify"] is None else settings["verify"]
        manager = _pool_manager(self.proxy, verify, settings["cert"])
        plain_url = urldefragauth(self.url)  # credentials in the URL go in a header instead
        # Straight to the API's own pool where no proxy stands between: no URL parsed per call.
        self._pool: urllib3.PoolManager | urllib3.HTTPConnectionPool = (
            manager if self.proxy else manager.connection_from_url(plain_url)
        )
        self._prefix = plain_url if self.proxy else urlsplit(plain_url).path
        self.headers = _headers(self.url, token)
        self._timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s)

    def call(
        self,
        method: str,
        path: str,
        retries: urllib3.Retry,
        *,
        json: Any = None,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """One call (``json`` or ``data`` as its body, with ``headers`` besides the client's own);
        ``ServiceUnreachable`` if no answer came."""
        headers = {**self.headers, **headers} if headers else self.headers
        body = data
        if json is not None:
            # NaN and infinity go as JSON's extension writes them: the API answers 422 naming
            # the field (what a finite-only encoder would raise here names none).
            body = json_module.dumps(json, default=_plain_scalar).encode()
            headers = {**headers, "Content-Type": "application/json"}
        elif data is not None:
            headers = {**headers, "Content-Type": "application/octet-stream"}
        target = self._prefix + path
        if params:
            target += "?" + urlencode(params)
        try:
            response = self._pool.urlopen(
                method, target, body=body, headers=headers, retries=retries,
                timeout=self._timeout, redirect=False,
            )  # fmt: skip
        except urllib3.exceptions.HTTPError as error:
            raise ServiceUnreachable(
                error, _unanswered(f"{method} {path}", error, retries)
            ) from error
        return Answer(response.status, response.data, response.headers)


def _unanswered(call: str, error: urllib3.exceptions.HTTPError, retries: urllib3.Retry) -> str:
    """Why ``call`` has no answer, and whether it was asked again (urllib3 says "Max retries
    exceeded" of a call it never repeats)."""
    cause = error.reason if isinstance(error, urllib3.exceptions.MaxRetryError) else error
    lost_on_the_way = isinstance(
        cause, urllib3.exceptions.ProtocolError | urllib3.exceptions.ReadTimeoutError
    )
    if lost_on_the_way and not retries.read and retries.total:  # retried, but not such a loss
        why = (
            "a repeat would cost the API as much again"
            if call.startswith("GET ")
            else "a repeat could do it twice; look whether it was done (a study by its name, say)"
        )
        return f"the answer to {call} was lost on the way ({cause}): not asked again, as {why}"
    return f"the service did not answer {call} ({cause})"


def _pool_manager(
    proxy: str | None, verify: bool | str, cert: str | tuple[str, str] | None
) -> urllib3.PoolManager:
    """urllib3's manager for the TLS settings and the proxy (HTTP or SOCKS), as requests's
    ``HTTPAdapter`` builds it."""
    options: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED" if verify else "CERT_NONE"}
    options["maxsize"] = POOL_SIZE
    if verify:
        bundle = verify if isinstance(verify, str) else DEFAULT_CA_BUNDLE_PATH
        options["ca_cert_dir" if os.path.isdir(bundle) else "ca_certs"] = bundle
    if cert is not None:
        options["cert_file"], options["key_file"] = (cert, None) if isinstance(cert, str) else cert
    if proxy is None:
        return urllib3.PoolManager(**options)
    username, password = get_auth_from_url(proxy)
    if proxy.lower().startswith("socks"):
        from urllib3.contrib.socks import SOCKSProxyManager  # needs PySocks, as requests does

        return SOCKSProxyManager(
            proxy, username=username or None, password=password or None, **options
        )
    auth = urllib3.make_headers(proxy_basic_auth=f"{username}:{password}") if username else {}
    return urllib3.ProxyManager(proxy, proxy_headers=auth, **options)


def _with_scheme(proxy: str) -> str:
    """A proxy named without a scheme (``proxy.corp:3128``) is an HTTP proxy, as requests takes it."""
    return proxy if "://" in proxy else f"http://{proxy}"


def _headers(url: str, token: str | None) -> dict[str, str]:
    """Every call's headers: the bearer token; without one, the URL's own credentials or else a
    ``.netrc`` entry's, as Basic auth (neither ever replaces the token)."""
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
        return headers
    username, password = get_auth_from_url(url)
    credentials = (username, password) if username else get_netrc_auth(url)
    if credentials is not None:
        headers.update(urllib3.make_headers(basic_auth=":".join(credentials)))
    return headers


def _plain_scalar(value: Any) -> Any:
    """A NumPy or PyTorch scalar (``np.float32(0.5)``, ``torch.tensor(0.5)``, what a training
    loop's loss often is) as the Python number it holds; ``TypeError`` for anything else."""
    try:
        plain = value.item()
    except (AttributeError, TypeError, ValueError, RuntimeError):  # no scalar, or several values
        plain = None
    if isinstance(plain, int | float | str):
        return plain
    kind = type(value).__name__
    raise TypeError(
        f"Object of type {kind} is not JSON serializable (one number, e.g. float(x), is)"
    )
