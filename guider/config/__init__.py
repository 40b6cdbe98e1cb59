"""Configuration: typed sections with their defaults and bounds (`sections`), and the resolved
configuration of one run (`run`): RunConfig, TrainConfig, resolve_run_config."""

from guider.config.run import RunConfig, TrainConfig, load_yaml, parse_set, rebuild_run_config, resolve_run_config
from guider.config.sections import ConfigError, Section, deep_merge, setting

__all__ = [
    "ConfigError",
    "RunConfig",
    "Section",
    "TrainConfig",
    "deep_merge",
    "load_yaml",
    "parse_set",
    "rebuild_run_config",
    "resolve_run_config",
    "setting",
]
