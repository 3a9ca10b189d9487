"""The data service's settings (KUBETUNE_DATA_*)."""

from __future__ import annotations

from pydantic import Field

from kubetune_common.config import PORTS, PartSettings


class Settings(PartSettings, env_prefix="KUBETUNE_DATA_"):
    """The data service. Env prefix KUBETUNE_DATA_."""

    port: int = PORTS["data"]
    catalog_url: str = Field("", description="Catalog database URL; empty: SQLite under the data home.")
    s3_endpoint_url: str = Field("", description="S3-compatible endpoint (MinIO); empty: AWS.")
    s3_region: str = Field("us-east-1", description="Region for the S3 client.")
    cache_uri: str = Field("", description="Where stored tables live: empty for <home>/data/blobs, or s3://bucket/prefix.")
    max_bytes: int = Field(1024**3, description="Largest source a registration accepts, in bytes.")
    min_rows: int = Field(10, description="Fewest rows a dataset may have (the 80/10/10 split needs some).")
    allow_local_paths: bool = Field(True, description="Accept local paths as sources (off in Kubernetes).")
