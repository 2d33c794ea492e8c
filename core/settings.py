"""One typed settings object per program, loaded from TOML plus environment.

Environment variables override the file: ``<PREFIX>__SECTION__KEY=value``
(for example ``RFR_APPLIANCE__MQTT__PORT=18830``). Validation happens once at
start, and every problem is reported with the key path so an operator can
fix the file without reading code.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from core.errors import SettingsError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for settings sections: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _env_overrides(prefix: str, environ: dict[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    head = prefix.upper() + "__"
    for name, value in environ.items():
        if not name.upper().startswith(head):
            continue
        path = [p.lower() for p in name[len(head):].split("__") if p]
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        if path:
            node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(
    model: type[M], path: Path | None, env_prefix: str, environ: dict[str, str] | None = None
) -> M:
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as e:
            raise SettingsError(f"Settings file {path} does not exist.") from e
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f"Settings file {path} is not valid TOML: {e}") from e
    data = _merge(data, _env_overrides(env_prefix, dict(os.environ if environ is None else environ)))
    try:
        return model.model_validate(data)
    except ValidationError as e:
        lines = [f"Settings in {path or 'the environment'} are invalid:"]
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {key}: {err['msg']}")
        raise SettingsError("\n".join(lines)) from e
