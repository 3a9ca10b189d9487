"""The tuning service's settings (KUBETUNE_TUNING_*), and the two its workers share."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from kubetune_common.config import PORTS, PartSettings, address_of, shared


def storage_url():
    return Field(
        "",
        validation_alias=AliasChoices("KUBETUNE_TUNING_STORAGE_URL"),
        description="Optuna storage URL; empty: SQLite under the data home. PostgreSQL for many machines.",
    )


def trial_grace_s():
    return shared("trial_grace_s", 30.0, "A RUNNING trial with no heartbeat for this long lost its worker: it is "
                  "finished from its saved end or failed, and its ticket runs again (several heartbeats long).")


class Settings(PartSettings, env_prefix="KUBETUNE_TUNING_"):
    """The tuning service. Env prefix KUBETUNE_TUNING_."""

    port: int = PORTS["tuning"]
    storage_url: str = storage_url()
    max_trials: int = Field(10_000, description="Most trials one study may ask for.")
    max_parallel: int = Field(64, description="Most trials of one study that may run at once.")
    data_address: str = address_of("data")
    tracking_address: str = address_of("tracking")
    trial_grace_s: float = trial_grace_s()
    summary_cache_size: int = Field(64, description="Study summaries kept, each recomputed only when its study changes.")
