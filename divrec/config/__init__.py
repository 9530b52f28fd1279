"""Configuration checks: dataclass schemas of the config groups and start-up validation."""
