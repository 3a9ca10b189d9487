"""How kubetune reaches an MLflow server: one pooled `requests` session, explicit
timeouts, and a few retries with backoff on connection errors and 5xx answers (never
on 4xx, never after a read timeout: the server may still be doing it). Every failure
leaves as an `MlflowError`.

Auth and TLS follow MLflow's own environment variables: MLFLOW_TRACKING_TOKEN (bearer),
MLFLOW_TRACKING_USERNAME/PASSWORD (basic), MLFLOW_TRACKING_INSECURE_TLS,
MLFLOW_TRACKING_SERVER_CERT_PATH, MLFLOW_TRACKING_CLIENT_CERT_PATH."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from services.common.mlflow_rest.entities import drop_none
from services.common.mlflow_rest.errors import CONNECTION_ERROR, TIMEOUT, MlflowError

log = logging.getLogger(__name__)

API = "/api/2.0/mlflow/"
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_STATUS_CODE = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "ENDPOINT_NOT_FOUND", 429: "REQUEST_LIMIT_EXCEEDED", 503: "TEMPORARILY_UNAVAILABLE"}


class Transport:
    """Calls to one MLflow server. Thread-safe: the stores' threads share its session."""

    def __init__(self, uri: str, *, connect_timeout_s: float = 5.0, read_timeout_s: float = 120.0,
                 retries: int = 2, backoff_s: float = 0.5, pool_size: int = 32):
        if not uri.startswith(("http://", "https://")):
            raise ValueError(f"MLflow URI {uri!r}: an http(s):// tracking server is required")
        self.uri = uri.rstrip("/")
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self._session = requests.Session()
        # requests' own retries stay off (max_retries=0): ours know MLflow's errors.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["Accept"] = "application/json"
        self._configure_auth()
        self._closed = threading.Event()

    def _configure_auth(self) -> None:
        env = os.environ
        if env.get("MLFLOW_TRACKING_TOKEN"):
            self._session.headers["Authorization"] = f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"
        elif env.get("MLFLOW_TRACKING_USERNAME") and env.get("MLFLOW_TRACKING_PASSWORD"):
            self._session.auth = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
        if env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("1", "true"):
            self._session.verify = False
        elif env.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
            self._session.verify = env["MLFLOW_TRACKING_SERVER_CERT_PATH"]
        if env.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
            self._session.cert = env["MLFLOW_TRACKING_CLIENT_CERT_PATH"]

    def close(self) -> None:
        self._closed.set()
        self._session.close()

    def call(self, method: str, endpoint: str, body: dict | None = None) -> dict:
        """One API call; `body` goes as query parameters for GET, as JSON otherwise."""
        url = self.uri + API + endpoint
        body = drop_none(body or {})
        kwargs: dict[str, Any] = {"params": body} if method == "GET" else {"json": body}
        attempt = 0
        while True:
            try:
                response = self._session.request(method, url, timeout=self.timeout, **kwargs)
            except requests.Timeout as exc:
                if not isinstance(exc, requests.ConnectTimeout):
                    # The server may be working on it still: a retry could do it twice.
                    raise MlflowError(TIMEOUT, f"{method} {endpoint}: no answer within {self.timeout[1]} s") from exc
                error = MlflowError(CONNECTION_ERROR, f"{self.uri} unreachable: {exc}")
            except requests.ConnectionError as exc:
                error = MlflowError(CONNECTION_ERROR, f"{self.uri} unreachable: {exc}")
            except requests.RequestException as exc:
                raise MlflowError("BAD_REQUEST", f"{method} {endpoint}: {exc}") from exc
            else:
                if response.status_code < 300:
                    return response.json() if response.content else {}
                error = self._error(response, method, endpoint)
                if response.status_code not in _RETRY_STATUS:
                    raise error
            if attempt >= self.retries or self._closed.is_set():
                raise error
            delay = self.backoff_s * 2**attempt
            log.debug("MLflow %s %s failed (%s); retrying in %.1f s", method, endpoint, error, delay)
            time.sleep(delay)
            attempt += 1

    @staticmethod
    def _error(response: requests.Response, method: str, endpoint: str) -> MlflowError:
        status = response.status_code
        try:
            js = response.json()
        except ValueError:
            js = None
        if isinstance(js, dict) and js.get("error_code"):
            return MlflowError(str(js["error_code"]), str(js.get("message", "")), status)
        code = _STATUS_CODE.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
        text = response.text.strip()[:200]
        return MlflowError(code, f"{method} {endpoint}: HTTP {status} {text}", status)
