"""Recipe files: YAML in training/configs (or any path), `base:` inheritance, and `key=value` overrides."""

from __future__ import annotations

from pathlib import Path

import yaml

from multimodal.errors import MissingError, UsageError

RECIPES_DIR = Path(__file__).resolve().parent / "configs"


def apply_override(data: dict, override: str) -> None:
    if "=" not in override:
        raise UsageError(f"override {override!r} is not of the form key=value")
    key, raw = override.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as e:
        raise UsageError(f"override {override!r}: the value is not valid YAML ({e.problem}); quote it") from None
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UsageError(f"override {override!r}: {part} is not a section")
    node[parts[-1]] = value


def recipe_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = RECIPES_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    available = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    raise MissingError(f"no recipe file {name_or_path!r} and no recipe of that name; recipes: {available}")


def read_recipe(name_or_path: str, seen: tuple[str, ...] = ()) -> dict:
    """A recipe's YAML as a dict; `base: OTHER` starts from recipe OTHER, whose sections this one's keys update.
    OTHER is a recipe name, a path beside this recipe, or a path from the current folder."""
    path = recipe_path(name_or_path).resolve()
    if str(path) in seen:
        chain = " -> ".join([*seen, str(path)])
        raise UsageError(f"recipe {name_or_path!r}: its `base:` chain comes back to itself ({chain})")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise UsageError(f"recipe {path}: expected a mapping of config keys, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise UsageError(f"recipe {path}: `base:` must name one recipe, got {base!r}")
    beside = path.parent / base
    return merge(read_recipe(str(beside) if beside.is_file() else base, (*seen, str(path))), data)


def merge(base: dict, update: dict) -> dict:
    """`base` with `update`'s keys: a section (model, data, ...) merges key by key; inside it, and at the top,
    a value replaces the base's whole (a new `eval.zeroshot` mapping is the new list of sets, not an addition)."""
    return base | {key: base[key] | value if isinstance(value, dict) and isinstance(base.get(key), dict) else value
                   for key, value in update.items()}
