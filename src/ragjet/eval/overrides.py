"""Settings overrides by dotted path (``index.kind=ivf_pq``), validated through the Settings model.

`--compare A,B` names two configurations; each side is one or more ``path=value`` joined by ``;``,
for example ``index.kind=ivf_pq;index.nprobe=4``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from ragjet.config import ConfigError, Settings, load_settings


@dataclass(frozen=True, slots=True)
class Override:
    path: str  # dotted: "section.field", or a top-level field such as "data_dir"
    value: str  # as typed; pydantic converts it ("true" → True, "16" → 16)

    def __str__(self) -> str:
        return f"{self.path}={self.value}"


def parse_override(text: str) -> Override:
    """``path=value`` → Override; raises ConfigError for anything else or an unknown path."""
    path, sep, value = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise ConfigError(f"setting override {text!r} must look like section.field=value")
    _check_path(path)
    return Override(path, value.strip())


def parse_config(text: str) -> tuple[Override, ...]:
    """One configuration: ``path=value`` items joined by ``;``."""
    return tuple(parse_override(item) for item in text.split(";") if item.strip())


def parse_compare(text: str) -> tuple[tuple[Override, ...], tuple[Override, ...]]:
    """``A,B`` → the two configurations' overrides; raises ConfigError unless there are exactly two."""
    sides = [side for side in text.split(",") if side.strip()]
    if len(sides) != 2:
        raise ConfigError(f"--compare needs exactly two configurations separated by a comma, got {text!r}")
    return parse_config(sides[0]), parse_config(sides[1])


def _check_path(path: str) -> None:
    model: type[BaseModel] = Settings
    parts = path.split(".")
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            where = ".".join(parts[:depth]) or "settings"
            known = ", ".join(sorted(model.model_fields))
            raise ConfigError(f"unknown setting {path!r}: {where} has no field {part!r} (known: {known})")
        annotation = field.annotation
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if depth < len(parts) - 1 and not is_section:
            raise ConfigError(f"unknown setting {path!r}: {'.'.join(parts[: depth + 1])} has no sub-fields")
        if depth == len(parts) - 1 and is_section:
            raise ConfigError(f"setting {path!r} is a section; name one of its fields")
        if is_section:
            model = annotation  # type: ignore[assignment]


def apply_overrides(settings: Settings, overrides: tuple[Override, ...]) -> Settings:
    """A new Settings with `overrides` applied; raises ConfigError naming any value the model rejects."""
    data = settings.model_dump()
    for override in overrides:
        _check_path(override.path)
        *sections, name = override.path.split(".")
        node = data
        for section in sections:
            node = node[section]
        node[name] = override.value
    return load_settings(**data)


def label(overrides: tuple[Override, ...]) -> str:
    return ";".join(map(str, overrides)) or "default"
