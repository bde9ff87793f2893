"""TOML recipe -> validated `Recipe`, collecting every problem at once; and back to TOML."""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
import typing
from pathlib import Path
from types import SimpleNamespace

import attrs
import tomli_w

from vle_kit.config import Choice, Recipe
from vle_kit.data import AUGMENTATIONS, OWN_AUGMENTATIONS
from vle_kit.errors import PluginError, RecipeError
from vle_kit.plugins import Registry, load_module, load_registry
from vle_kit.slots import Slot


def close(word: str, options: typing.Iterable[str]) -> str:
    """`; did you mean 'x'?` for a misspelling, else the empty string."""
    match = difflib.get_close_matches(word, list(options), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(m) for m in match)}?" if match else ""


def parse_override(item: str) -> tuple[str, object]:
    """`a.b=VALUE` -> ("a.b", VALUE read as a TOML value, or as a string if it is not one)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise RecipeError("--set", [f"{item!r}: expected KEY=VALUE"])
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def apply_overrides(table: dict, overrides: typing.Iterable[str]) -> None:
    for item in overrides:
        key, value = parse_override(item)
        *parents, last = key.split(".")
        node = table
        for part in parents:
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                raise RecipeError("--set", [f"{key}: {part!r} is not a table"])
        if not isinstance(node, dict):
            raise RecipeError("--set", [f"{key}: the parent is not a table"])
        node[last] = value


def read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise RecipeError(str(path), ["no such file"]) from None
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(str(path), [f"TOML syntax error: {e}"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(str(path), [f"cannot read: {e}"]) from None


def read_recipe(path: Path, extended_by: tuple[Path, ...] = ()) -> dict:
    """The recipe file at `path` as a table; one whose `recipe.extends` names another recipe
    (a path relative to it) is that recipe's table changed key by key: a table merges into
    the base's, except a slot's table whose `use` differs, which replaces it, as does any
    other value (an array of tables such as [[mask_loss]] too). The name is the recipe's own
    (or its file's), never the base's; the base's plug-ins are loaded too."""
    table = read_toml(path)
    meta = table.get("recipe", {})
    base = meta.pop("extends", None) if isinstance(meta, dict) else None
    if base is None:
        return table
    here = path.resolve()
    base_path = (path.parent / str(base)).resolve()
    if not isinstance(base, str) or not base_path.is_file():
        raise RecipeError(str(path), [f"recipe.extends: {base!r} is not a recipe file beside "
                                      f"this one"])
    if base_path in (here, *extended_by):
        raise RecipeError(str(path), [f"recipe.extends: {base!r} leads back to {path.name}, "
                                      f"in a circle"])
    under = read_recipe(base_path, (here, *extended_by))
    base_meta, own = under.get("recipe", {}), meta.get("plugins", [])
    base_meta = base_meta if isinstance(base_meta, dict) else {}  # its own error, said there
    plugins = [str(base_path.parent / spec) if (base_path.parent / spec).is_file() else spec
               for spec in map(str, base_meta.get("plugins", []))]  # found beside the base
    merged = merge(under, table)
    merged["recipe"] = {**{k: v for k, v in base_meta.items() if k != "name"}, **meta,
                        "plugins": plugins + own if isinstance(own, list) else own}
    return merged


def merge(base: dict, over: dict) -> dict:
    """Table `base` with `over`'s keys: tables merge key by key (a slot's table only while its
    `use` stays the same), any other value replaces the base's."""
    out = dict(base)
    for key, value in over.items():
        below = out.get(key)
        same = (isinstance(value, dict) and isinstance(below, dict)
                and value.get("use", below.get("use")) == below.get("use"))
        out[key] = merge(below, value) if same else value
    return out


def load_recipe(path: str | Path, overrides: typing.Iterable[str] = (),
                plugins: typing.Iterable[str] = (),
                data: str | None = None) -> tuple[Recipe, Registry]:
    """Read, override and validate a recipe; load the plug-ins it and `plugins` name. `data`
    swaps the [data] table for that data set's defaults at the recipe's image size.

    The plug-ins from both places end up in `recipe.plugins` (files as absolute paths), so the
    resolved recipe a run saves loads them again on `--resume`."""
    path = Path(path)
    table = read_recipe(path)
    if data is not None:
        size = table.get("data", {}).get("size")
        table["data"] = {"use": data, **({} if size is None else {"size": size})}
    apply_overrides(table, overrides)
    meta = table.get("recipe", {})
    listed = meta.get("plugins", []) if isinstance(meta, dict) else []
    specs = [(f"recipe.plugins[{i}]", str(spec), path.parent.resolve())
             for i, spec in enumerate(listed if isinstance(listed, list) else [])]
    specs += [("-p", spec, None) for spec in plugins]
    problems, modules, names = [], [], []
    for where, spec, base in specs:
        try:
            module = load_module(spec, base)
        except PluginError as e:
            problems.append(f"{where}: {e}")
            continue
        modules.append(module)
        names.append(module.__file__ if spec.endswith(".py") else spec)
    if isinstance(meta, dict) and names:
        table["recipe"] = {**meta, "plugins": list(dict.fromkeys(names))}
    try:
        registry = load_registry(modules)
    except PluginError as e:
        raise RecipeError(str(path), problems + [str(e)]) from None
    return validate(table, registry, str(path), problems), registry


def validate(table: dict, registry: Registry, source: str = "<recipe>",
             problems: list[str] | None = None) -> Recipe:
    """Build a Recipe from a parsed table, raising one RecipeError listing every problem."""
    problems = [] if problems is None else problems
    recipe = _build(Recipe, table, "", problems, registry)
    if recipe is not None:
        recipe = _with_own_augmentations(recipe, registry, problems)
        problems += _cross_checks(recipe, registry)
    if problems:
        raise RecipeError(source, problems)
    if not recipe.recipe.name:
        recipe = attrs.evolve(recipe, recipe=attrs.evolve(recipe.recipe, name=Path(source).stem))
    return recipe


def _with_own_augmentations(recipe: Recipe, registry: Registry, problems: list[str]) -> Recipe:
    """train.augment with "data" replaced by the data set's own augmentations, so that the
    resolved recipe a run saves, and everything that reads it, names them."""
    names = recipe.train.augment
    if OWN_AUGMENTATIONS not in names:
        return recipe
    own = registry.get("dataset", recipe.data.use).factory.augment
    unknown = [n for n in own if n not in AUGMENTATIONS]
    if unknown:
        problems.append(f"train.augment: \"data\" stands for data set {recipe.data.use!r}'s "
                        f"augment, which names {unknown[0]!r}; known: {', '.join(AUGMENTATIONS)}")
        return recipe
    names = tuple(dict.fromkeys(n for name in names
                                for n in (own if name == OWN_AUGMENTATIONS else (name,))))
    return attrs.evolve(recipe, train=attrs.evolve(recipe.train, augment=names))


def _cross_checks(recipe: Recipe, registry: Registry) -> list[str]:
    """Problems no single table shows: combinations of keys that cannot work."""
    problems = []
    size, token = recipe.data.config.size, recipe.model.token.size
    ratio = size // token
    if size % token or ratio < 2 or ratio & (ratio - 1):
        problems.append(f"data.size: {size} must be model.token.size ({token}) times a power of "
                        f"two (2, 4, 8, ...)")
    fold = recipe.model.fold
    if fold > 2 and fold > ratio // 2:
        problems.append(f"model.fold: {fold} x {fold} pixel blocks are more than the stem's "
                        f"{max(ratio // 2, 1)}x halving from data.size ({size}) to twice the "
                        f"token's ({2 * token}); use 2")
    saliency = recipe.model.saliency.use
    if recipe.mask_loss and not makes_masks(recipe, registry):
        names = ", ".join(repr(c.use) for c in recipe.mask_loss)
        need = "needs" if len(recipe.mask_loss) == 1 else "need"
        problems.append(f"mask_loss: {names} {need} masks, and model.saliency.use = "
                        f"{saliency!r} makes none; choose a saliency head or drop the "
                        f"[[mask_loss]] tables")
    combiner = registry.get("combiner", recipe.model.combiner.use).factory
    if combiner.paints_over and getattr(recipe.model.saliency.config, "scope", False):
        problems.append(f"model.saliency.scope: the {recipe.model.combiner.use!r} combiner "
                        f"paints masks over earlier ones, so the {saliency!r} head must not "
                        f"scope them to what those left; set scope = false")
    weights, k = recipe.train.step_weights, recipe.tokens.max
    if len(weights) > k:
        problems.append(f"train.step_weights: at most one weight for each step to tokens.max "
                        f"({k}), got {len(weights)} (train.step_weights = [] weighs all 1)")
    if recipe.train.batch > recipe.data.config.train:
        problems.append(f"train.batch: {recipe.train.batch} is more than the "
                        f"{recipe.data.config.train} training images (data.train)")
    return problems


def makes_masks(recipe: Recipe, registry: Registry) -> bool:
    """Whether the recipe's saliency head makes masks (the `none` head makes none)."""
    return registry.get("saliency", recipe.model.saliency.use).factory.makes_masks


def warnings(recipe: Recipe, registry: Registry) -> list[str]:
    """Legitimate but likely unintended combinations, one line each, said before a run."""
    said = []
    combiner = recipe.model.combiner.use
    if combiner != "sum" and not makes_masks(recipe, registry):
        said.append(f"model.combiner.use: {combiner!r} without a saliency head has no masks to "
                    f"use; every part is added whole, as 'sum' does")
    return said


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not re.fullmatch(r"[A-Za-z0-9_-]+", key):
        key = json.dumps(key)  # as TOML quotes it: a newline in a key stays on one line
    return f"{path}.{key}" if path else key


def _type_problem(value: object, tp: object) -> tuple[object, str | None]:
    """Check a TOML value against a field's type; return the value as the field wants it."""
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, list):
            return value, f"expected a list, got {type(value).__name__} {value!r}"
        items = [_type_problem(item, typing.get_args(tp)[0]) for item in value]
        bad = next((p for _, p in items if p), None)
        return tuple(i for i, _ in items), bad
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    ok = {bool: lambda x: isinstance(x, bool),
          int: lambda x: isinstance(x, int) and not isinstance(x, bool),
          float: lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
          str: lambda x: isinstance(x, str)}
    if tp in ok and not ok[tp](value):
        return value, f"expected {names[tp]}, got {type(value).__name__} {value!r}"
    if tp is float and not math.isfinite(value):
        return value, f"expected a finite number, got {value!r}"
    return (float(value) if tp is float else value), None


def _validator_message(error: Exception) -> str:
    message = str(error.args[0]) if error.args else str(error)
    match = re.fullmatch(r"'[^']+' (must .*?)(?:: (.*)| \(got (.*)\))", message, flags=re.S)
    return f"{match[1]}, got {match[2] or match[3]}" if match else message


def _choice(slot: Slot, table: object, path: str, problems: list[str],
            registry: Registry) -> Choice | None:
    if not isinstance(table, dict):
        problems.append(f"{path}: expected a table with a 'use' key, got {table!r}")
        return None
    use = table.get("use", slot.default)
    names = registry.names(slot.name)
    if use is None:
        problems.append(f"{path}.use: missing; choose a {slot.name}: {', '.join(names)}")
        return None
    if use not in names:
        problems.append(f"{path}.use: unknown {slot.name} {use!r}{close(str(use), names)} "
                        f"(available: {', '.join(names)})")
        return None
    options = {k: val for k, val in table.items() if k != "use"}
    config = _build(registry.get(slot.name, use).config_class, options, path, problems,
                    registry, owner=f"{slot.name} {use!r}")
    return None if config is None else Choice(use, config)


def _build(cls: type, table: object, path: str, problems: list[str], registry: Registry,
           owner: str = "") -> object | None:
    """Build attrs class `cls` from `table`, appending a line to `problems` for each fault."""
    if not isinstance(table, dict):
        problems.append(f"{path}: expected a table, got {table!r}")
        return None
    fields = {f.name: f for f in attrs.fields(attrs.resolve_types(cls))}
    before = len(problems)
    for key in table:
        if key not in fields:
            where = f"a setting of {owner}" if owner else "a known key"
            allowed = f"allowed: {', '.join(fields)}" if fields else f"{owner} takes no settings"
            problems.append(f"{_join(path, key)}: not {where}{close(key, fields)} ({allowed})")
    values, bad = {}, set()
    for name, field in fields.items():
        key = _join(path, name)
        slot = field.metadata.get("slot")
        count = len(problems)
        if slot is not None and slot.many:
            given = table.get(name, [])
            if not isinstance(given, list):
                problems.append(f"{key}: expected a list of tables ([[{key}]])")
            else:
                values[name] = tuple(_choice(slot, t, _join(key, i), problems, registry)
                                     for i, t in enumerate(given))
        elif slot is not None:
            values[name] = _choice(slot, table.get(name, {}), key, problems, registry)
        elif attrs.has(field.type):
            values[name] = _build(field.type, table.get(name, {}), key, problems, registry)
        elif name in table:
            values[name], problem = _type_problem(table[name], field.type)
            if problem:
                problems.append(f"{key}: {problem}")
        elif field.default is attrs.NOTHING:
            problems.append(f"{key}: missing" + (f"; {owner} needs it" if owner else ""))
        if len(problems) > count:
            bad.add(name)
    merged = {f.name: f.default.factory() if isinstance(f.default, attrs.Factory) else f.default
              for f in fields.values()}
    merged.update({n: val for n, val in values.items() if n not in bad})
    instance = SimpleNamespace(**merged)
    for name, field in fields.items():
        if field.validator is not None and name not in bad:
            try:
                field.validator(instance, field, merged[name])
            except (TypeError, ValueError) as e:
                problems.append(f"{_join(path, name)}: {_validator_message(e)}")
    if len(problems) > before:
        return None
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        problems.append(f"{path or 'recipe'}: {_validator_message(e)}")
        return None


def to_table(obj: object) -> dict:
    """The inverse of `_build`: a TOML-ready table with every default filled in."""
    table = {}
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        if isinstance(value, Choice):
            table[field.name] = {"use": value.use, **to_table(value.config)}
        elif isinstance(value, tuple) and value and isinstance(value[0], Choice):
            table[field.name] = [{"use": c.use, **to_table(c.config)} for c in value]
        elif attrs.has(type(value)):
            table[field.name] = to_table(value)
        elif isinstance(value, tuple):
            table[field.name] = list(value)
        else:
            table[field.name] = value
    return table


def flat(table: dict, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists of tables get their index: "mask_loss[0].weight"."""
    out = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, name + "."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                out.update(flat(item, f"{name}[{i}]."))
        else:
            out[name] = value
    return out


def differences(old: Recipe, new: Recipe) -> dict[str, tuple[object, object]]:
    """Dotted key -> (old value, new value) for every key the two recipes disagree on."""
    a, b = flat(to_table(old)), flat(to_table(new))
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def dump_recipe(recipe: Recipe) -> str:
    return tomli_w.dumps(to_table(recipe))
