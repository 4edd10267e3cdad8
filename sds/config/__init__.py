"""Typed run configuration: defaults in dataclasses (``schema``), YAML holds differences, ``key=value`` goes
last (``parse``), ranges checked before any model loads (``checks``). Imports no torch, so ``sds show-config``
and config errors are instant."""

from sds.config.checks import MAX_PROMPT_CHARS, MAX_STEPS, split_lora, validate
from sds.config.parse import (
    ALIASES,
    from_dict,
    load_config,
    parse_override,
    requested_model,
    requested_recipe,
    to_dict,
    to_yaml,
    with_overrides,
)
from sds.config.schema import (
    BUILTIN_STAGES,
    CameraConfig,
    DensityGeometry,
    ExportConfig,
    FieldConfig,
    GridEncoding,
    GuidanceConfig,
    HashGridEncoding,
    LrScale,
    OptimConfig,
    Ramp,
    RegularizerConfig,
    RenderConfig,
    RunConfig,
    SdfGeometry,
    StageConfig,
    constant,
)
from sds.errors import ConfigError

__all__ = [
    "ALIASES", "BUILTIN_STAGES", "MAX_PROMPT_CHARS", "MAX_STEPS", "CameraConfig", "ConfigError", "DensityGeometry",
    "ExportConfig", "FieldConfig", "GridEncoding", "GuidanceConfig", "HashGridEncoding", "LrScale", "OptimConfig",
    "Ramp", "RegularizerConfig", "RenderConfig", "RunConfig", "SdfGeometry", "StageConfig", "constant", "from_dict",
    "load_config", "parse_override", "requested_model", "requested_recipe", "split_lora", "to_dict", "to_yaml",
    "validate", "with_overrides",
]
