"""A trial's model as ONE artifact file, and the full MLflow pyfunc made from it.

Every trial logs a model, few are ever registered: a pyfunc directory is ~7 files,
each its own upload to MLflow (~7-14 ms of MLflow's CPU apiece), which was most of
MLflow's cost per trial. So a worker uploads one file, `model/kubetune-model.pt` (the
weights, the preprocessing spec with the architecture, the signature and the pip
requirements), and the registry turns it into the full pyfunc (`model/MLmodel`, the
code, the artifacts, the environment files) when the run is first registered, in the
same run's `model/` folder: from then on `runs:/<run>/model` loads with
`mlflow.pyfunc.load_model` like any model, and a model logged before this format
(a pyfunc already) is registered as it is.

torch and mlflow are imported inside the functions: the registry imports this module
at start and needs them only when it packages a model."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from services.common import mlflow_tags

# The file's name inside the run's model folder; `model/kubetune-model.pt`.
PACKED_FILE = "kubetune-model.pt"
PACKED_PATH = f"{mlflow_tags.MODEL_ARTIFACT}/{PACKED_FILE}"
MLMODEL = "MLmodel"
FORMAT = 1
# The pyfunc's code: the worker's model module, logged as MLflow "models from code".
MODEL_CODE = Path(__file__).resolve().parents[1] / "tuning" / "worker" / "tabular_model.py"


def pack(path: Path, state_dict: dict, spec: dict, signature: dict, requirements: list[str]) -> Path:
    """Writes the one file: tensors and plain values only, so `torch.load(weights_only=True)`
    reads it back without unpickling code. `spec` is the model's preprocessing and
    architecture (what tabular_model.py's TabularModel reads), `signature` MLflow's
    ModelSignature.to_dict()."""
    import torch  # noqa: PLC0415

    torch.save({"format": FORMAT, "state_dict": state_dict, "spec": json.dumps(spec), "signature": signature,
                "requirements": list(requirements)}, path)
    return path


def unpack(path: Path) -> dict:
    import torch  # noqa: PLC0415

    packed = torch.load(path, weights_only=True, map_location="cpu")
    if not isinstance(packed, dict) or packed.get("format") != FORMAT:
        raise ValueError(f"{path.name}: not a kubetune packed model (format {FORMAT})")
    return packed


def save_pyfunc(packed_file: Path, out: Path) -> Path:
    """The full MLflow pyfunc model of a packed file, written to the folder `out`."""
    import mlflow.pyfunc  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from mlflow.models import ModelSignature  # noqa: PLC0415

    packed = unpack(packed_file)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = tmp / "weights.pt"
        torch.save(packed["state_dict"], weights)
        spec = tmp / "spec.json"
        spec.write_text(packed["spec"])
        mlflow.pyfunc.save_model(
            path=out, python_model=str(MODEL_CODE), artifacts={"weights": str(weights), "spec": str(spec)},
            signature=ModelSignature.from_dict(packed["signature"]),
            # Explicit, as the worker recorded them: inferring them costs seconds (DESIGN.md).
            pip_requirements=packed["requirements"],
        )
    return out


def package_run(mlflow_uri: str, run_id: str) -> bool:
    """Makes `runs:/<run_id>/model` a full pyfunc when it holds only the packed file;
    True once it is one (already, or now), False when the run has neither.
    Idempotent: two callers at once write the same files."""
    from mlflow import MlflowClient  # noqa: PLC0415

    client = MlflowClient(mlflow_uri)
    names = {Path(a.path).name for a in client.list_artifacts(run_id, mlflow_tags.MODEL_ARTIFACT)}
    if MLMODEL in names:
        return True
    if PACKED_FILE not in names:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(client.download_artifacts(run_id, PACKED_PATH, tmp))
        model = save_pyfunc(local, Path(tmp) / "pyfunc")
        # MLmodel last: a reader that sees it finds every other file in place.
        files = sorted((p for p in model.rglob("*") if p.is_file()), key=lambda p: p.name == MLMODEL)
        for f in files:
            sub = f.parent.relative_to(model).as_posix()
            client.log_artifact(run_id, str(f), mlflow_tags.MODEL_ARTIFACT + ("" if sub == "." else f"/{sub}"))
    return True
