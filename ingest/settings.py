"""driftnet's settings: one typed class per component, from flags, env, a TOML file, defaults.

Precedence: command-line flags > environment (``DRIFTNET_<SECTION>__<KEY>``, e.g.
``DRIFTNET_KAFKA__BOOTSTRAP_SERVERS``) > the ``--config`` TOML file (``[kafka]``,
``[collector]``, ...) > defaults. Unknown keys are errors.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from ingest.collector.config import CollectorSettings
from ingest.enrich.config import EnrichSettings
from ingest.lake.config import MaintainSettings
from ingest.loader.config import LoaderSettings
from ingest.metrics.config import MetricsSettings
from ingest.transport.config import EmbeddedLogSettings, KafkaSettings
from schemas.errors import ConfigError, toml_file_error, validation_problems


class DriftnetSettings(BaseSettings):
    """All settings of a driftnet process."""

    model_config = SettingsConfigDict(
        env_prefix="DRIFTNET_", env_nested_delimiter="__", extra="forbid",
        nested_model_default_partial_update=True,
    )
    _toml_path: ClassVar[Path | None] = None

    collector: CollectorSettings = Field(default_factory=CollectorSettings)
    loader: LoaderSettings = Field(default_factory=LoaderSettings)
    embedded: EmbeddedLogSettings = Field(default_factory=EmbeddedLogSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    enrich: EnrichSettings = Field(default_factory=EnrichSettings)
    maintain: MaintainSettings = Field(default_factory=MaintainSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags, then environment, then the TOML file."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_path))
        return tuple(sources)

    @property
    def uses_kafka(self) -> bool:
        """True when Kafka bootstrap servers are configured (else the embedded log)."""
        return bool(self.kafka.bootstrap_servers)


def load_settings(config: Path | None = None, **overrides: Any) -> DriftnetSettings:
    """Settings from flags (``overrides``, nested dicts per section), env and ``config``."""
    if config is not None and not Path(config).is_file():
        raise ConfigError("config file not found", path=str(config))
    DriftnetSettings._toml_path = Path(config) if config is not None else None
    try:
        return DriftnetSettings(**{k: v for k, v in overrides.items() if v})
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {validation_problems(exc)}") from exc
    except SettingsError as exc:  # a variable for a whole section (DRIFTNET_LOADER) not JSON
        cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        raise ConfigError(f"invalid settings: {exc}{cause}") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise toml_file_error("config file", config, exc) from exc
    finally:
        DriftnetSettings._toml_path = None
