"""MLflow's errors as kubetune sees them: `MlflowError` (MLflow's error code, or a
transport failure of our own naming) and the one policy that turns it into a domain
error, for every store that talks to MLflow."""

from __future__ import annotations

from kubetune_common.errors import FailedPrecondition, InvalidArgument, KubetuneError, NotFound, Unavailable

# Error codes of our own, beside MLflow's.
CONNECTION_ERROR = "CONNECTION_ERROR"
TIMEOUT = "TIMEOUT"
NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"})
ALREADY_EXISTS_CODES = frozenset({"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"})
# Codes that say the server (or the way to it) failed, not the request.
# ENDPOINT_NOT_FOUND: the URI leads somewhere that is not an MLflow server.
TRANSIENT_CODES = frozenset({"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED",
                             "ENDPOINT_NOT_FOUND", CONNECTION_ERROR, TIMEOUT})


class MlflowError(Exception):
    """An MLflow call that failed: MLflow's error code and message, or a transport failure."""

    def __init__(self, error_code: str, message: str, http_status: int | None = None):
        super().__init__(f"{error_code}: {message}")
        self.error_code = error_code
        self.message = message
        self.http_status = http_status

    @property
    def not_found(self) -> bool:
        return self.error_code in NOT_FOUND_CODES

    @property
    def already_exists(self) -> bool:
        return self.error_code in ALREADY_EXISTS_CODES

    @property
    def transient(self) -> bool:
        """The server, the network or the configuration failed (worth a later retry),
        not the request."""
        return self.error_code in TRANSIENT_CODES or (self.http_status or 0) >= 500


def domain_error(exc: Exception, server: str = "MLflow tracking server") -> KubetuneError:
    """MLflow's errors as the domain's: a refusal of the request is the caller's to fix;
    anything else is worth a retry later."""
    if isinstance(exc, KubetuneError):
        return exc
    if isinstance(exc, MlflowError) and not exc.transient:
        if exc.not_found:
            return NotFound(exc.message)
        if exc.already_exists:
            return FailedPrecondition(exc.message)
        # INVALID_PARAMETER_VALUE, BAD_REQUEST, INVALID_STATE and any other refusal.
        return InvalidArgument(exc.message)
    return Unavailable(f"{server}: {exc}")


def mlflow_calls(method=None, *, server: str = "MLflow tracking server"):
    """Decorates a store method (or every public method of a store class) so that
    MLflow's exceptions leave it as domain errors."""

    def wrap(fn):
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - MLflow's errors and any other failure alike
                raise domain_error(exc, server) from exc

        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        return wrapper

    def apply(target):
        if isinstance(target, type):
            for attr, fn in list(vars(target).items()):
                if not attr.startswith("_") and callable(fn):
                    setattr(target, attr, wrap(fn))
            return target
        return wrap(target)

    return apply(method) if method is not None else apply
