"""Generated code is committed; regenerating must change nothing."""

import filecmp
from pathlib import Path

from protos import generate as protogen

GEN = Path(__file__).resolve().parents[2] / "gen"


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_generated_code_is_up_to_date(tmp_path):
    protogen.generate(tmp_path)
    fresh, committed = _files(tmp_path), _files(GEN)
    assert fresh == committed, f"run `make proto`: files differ {sorted(fresh ^ committed)}"
    changed = [f for f in sorted(fresh) if not filecmp.cmp(tmp_path / f, GEN / f, shallow=False)]
    assert not changed, f"run `make proto`: stale generated files {changed}"


def test_every_rpc_message_follows_the_naming_rule():
    from kubetune.gateway.v1 import gateway_pb2

    for service in gateway_pb2.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            # A streaming twin (PredictStream) takes a stream of its unary sibling's requests.
            base = method.name.removesuffix("Stream") if method.client_streaming and method.server_streaming else method.name
            assert method.input_type.name == f"{base}Request", method.name
