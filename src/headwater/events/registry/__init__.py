"""Schema registry: subjects, versions, global ids and compatibility checking."""

from .compat import CompatibilityMode, CompatibilityResult, SchemaType, check_compatibility

__all__ = ["CompatibilityMode", "CompatibilityResult", "SchemaType", "check_compatibility"]
