"""The small MLflow REST client both stores use: retries, error mapping, encodings.
Against a scripted HTTP server (the real server is covered by the store suites)."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kubetune_common.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.common.mlflow_rest import CONNECTION_ERROR, Metric, MlflowError, MlflowRest
from services.registry.mlflow_store import MlflowRegistryStore
from services.tracking.mlflow_store import MlflowStore, domain_error
from testing.servers import free_port


class Script:
    """Answers queued per path: (status, body); the last answer repeats."""

    def __init__(self):
        self.answers: dict[str, list[tuple[int, object]]] = {}
        self.requests: list[tuple[str, str, object]] = []


@pytest.fixture
def scripted():
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else query
            script.requests.append((self.command, path, body))
            queue = script.answers.get(path.removeprefix("/api/2.0/mlflow/"), [(200, {})])
            status, answer = queue.pop(0) if len(queue) > 1 else queue[0]
            data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    script.url = f"http://127.0.0.1:{server.server_port}"
    yield script
    server.shutdown()
    server.server_close()


def err(code: str, message: str = "m") -> dict:
    return {"error_code": code, "message": message}


def test_retries_5xx_then_succeeds(scripted):
    scripted.answers["runs/get"] = [(503, "busy"), (500, err("INTERNAL_ERROR")),
                                    (200, {"run": {"info": {"run_id": "r1", "experiment_id": "0"}}})]
    client = MlflowRest(scripted.url, backoff_s=0.01)
    assert client.get_run("r1").run_id == "r1"
    assert len(scripted.requests) == 3


def test_gives_up_after_retries_as_unavailable(scripted):
    scripted.answers["runs/get"] = [(502, "bad gateway")]
    client = MlflowRest(scripted.url, retries=2, backoff_s=0.01)
    with pytest.raises(MlflowError) as info:
        client.get_run("r1")
    assert info.value.transient and len(scripted.requests) == 3
    assert isinstance(domain_error(info.value), Unavailable)


def test_4xx_is_not_retried_and_maps_to_domain_errors(scripted):
    scripted.answers["runs/get"] = [(404, err("RESOURCE_DOES_NOT_EXIST", "Run with id=x not found"))]
    scripted.answers["experiments/create"] = [(400, err("RESOURCE_ALREADY_EXISTS"))]
    scripted.answers["runs/update"] = [(400, err("INVALID_PARAMETER_VALUE"))]
    client = MlflowRest(scripted.url, backoff_s=0.01)
    with pytest.raises(MlflowError) as info:
        client.get_run("x")
    assert info.value.not_found and len(scripted.requests) == 1
    assert isinstance(domain_error(info.value), NotFound)
    with pytest.raises(MlflowError) as info:
        client.create_experiment("e")
    assert isinstance(domain_error(info.value), FailedPrecondition)
    with pytest.raises(MlflowError) as info:
        client.set_terminated("r", "FINISHED", 1)
    assert isinstance(domain_error(info.value), InvalidArgument)
    assert len(scripted.requests) == 3


def test_unreachable_server_is_unavailable():
    client = MlflowRest(f"http://127.0.0.1:{free_port()}", retries=1, backoff_s=0.01)
    with pytest.raises(MlflowError) as info:
        client.get_run("r")
    assert info.value.error_code == CONNECTION_ERROR
    with pytest.raises(Unavailable):
        MlflowStore(client.uri).get_runs(["r"])
    with pytest.raises(Unavailable):
        MlflowRegistryStore(client.uri).get_model("m")


def test_non_finite_metrics_travel_as_protobuf_json(scripted):
    client = MlflowRest(scripted.url)
    client.log_batch("r", [Metric("a", math.nan, 1, 0), Metric("a", math.inf, 1, 1), Metric("a", 0.5, 1, 2)],
                     params={"p": 1}, tags={"t": "v"})
    method, path, body = scripted.requests[0]
    assert (method, path) == ("POST", "/api/2.0/mlflow/runs/log-batch")
    assert [m["value"] for m in body["metrics"]] == ["NaN", "Infinity", 0.5]
    assert body["params"] == [{"key": "p", "value": "1"}]
    scripted.answers["metrics/get-history"] = [
        (200, {"metrics": [{"key": "a", "value": "NaN", "timestamp": "1", "step": "0"}], "next_page_token": "t"}),
        (200, {"metrics": [{"key": "a", "value": 2.0, "timestamp": 2, "step": 1}]}),
    ]
    history = client.get_metric_history("r", "a")
    assert math.isnan(history[0].value) and history[1].value == 2.0 and history[0].step == 0


def test_log_dataset_retries_a_duplicate_insert_race(scripted):
    scripted.answers["runs/log-inputs"] = [
        (400, err("INVALID_PARAMETER_VALUE", "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets")),
        (200, {}),
    ]
    from services.tracking.records import DatasetRecord

    MlflowStore(scripted.url).log_dataset("r", DatasetRecord("d", "v1", "ab" * 32, "s3://b/p"))
    assert [p for _, p, _ in scripted.requests] == ["/api/2.0/mlflow/runs/log-inputs"] * 2


def test_only_http_uris():
    with pytest.raises(ValueError):
        MlflowRest("sqlite:///mlflow.db")
