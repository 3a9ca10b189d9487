"""Every way the container test departs from the rendered dev overlay, in one place: the
public infra images no registry here serves, replaced by stand-ins built from packages
(tests/containers/infra/Dockerfile), and the one dev-only setting the images undo."""

from __future__ import annotations

from dataclasses import dataclass

# moto's S3 server takes the place of MinIO; its buckets are made with boto3 (minio/mc's job).
MAKE_BUCKETS = (
    "import os, boto3; s3 = boto3.client('s3', endpoint_url='http://minio:9000', "
    "region_name='us-east-1', aws_access_key_id=os.environ['S3_ACCESS_KEY_ID'], "
    "aws_secret_access_key=os.environ['S3_SECRET_ACCESS_KEY'])\n"
    "[s3.create_bucket(Bucket=b) for b in ('kubetune-mlflow', 'kubetune-datasets')]"
)


@dataclass(frozen=True)
class Substitute:
    target: str  # the stage of infra/Dockerfile that builds the stand-in
    command: list[str] | None = None  # replaces the manifest's command and args when given
    args: list[str] | None = None
    ready_path: str | None = None  # replaces an httpGet readiness path the stand-in lacks


def image_name(target: str) -> str:
    return f"kubetune-test-{target}"


# Image named in the manifests (repository, without the tag) -> its stand-in.
SUBSTITUTES = {
    "nats": Substitute("nats"),  # same flags: nats-server --config ... --name ...
    "postgres": Substitute("postgres"),  # same environment, volumes and init scripts
    "minio/minio": Substitute("s3", command=["moto_server"], args=["-H", "0.0.0.0", "-p", "9000"],
                              ready_path="/"),  # moto answers ListBuckets, not MinIO's health
    "minio/mc": Substitute("s3", command=["python", "-c", MAKE_BUCKETS], args=[]),
}

# The dev overlay leaves kubetune's root filesystems writable only so Skaffold can sync
# edited files into a dev image (RELOAD=true); the images tested here are the plain ones,
# which run read-only, as in prod.
READ_ONLY_ROOT = True


def repository(image: str) -> str:
    return image.rsplit("@", 1)[0].rsplit(":", 1)[0] if "/" in image or ":" in image else image
