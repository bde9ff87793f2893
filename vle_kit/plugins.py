"""Finding plug-ins (built-in, entry points, the user's own modules) and what each provides."""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import attrs
import pluggy

from vle_kit import hookspecs
from vle_kit.errors import PluginError
from vle_kit.interfaces import NoOptions
from vle_kit.slots import BY_NAME, SLOTS

BUILTIN_PACKAGE = "vle_kit_plugins"  # the plugins/ folder: every module in it is a plug-in


def builtin_plugins() -> list[str]:
    """The built-in plug-in modules: a new file in plugins/ needs no edit here."""
    package = importlib.import_module(BUILTIN_PACKAGE)
    return sorted(f"{BUILTIN_PACKAGE}.{m.name}" for m in pkgutil.iter_modules(package.__path__))


AUTOLOAD_OFF = "VLE_KIT_DISABLE_PLUGIN_AUTOLOAD"


@attrs.frozen
class Component:
    """One registered name: the class that builds it and the plug-in that provided it."""

    slot: str
    name: str
    factory: type
    plugin: str

    @property
    def config_class(self) -> type:
        return getattr(self.factory, "Config", NoOptions)


@attrs.frozen
class PluginInfo:
    name: str
    version: str
    provides: dict[str, list[str]]  # slot -> names


class Registry:
    """Every component of every slot, with the plug-in each came from."""

    def __init__(self, components: dict[str, dict[str, Component]], plugins: list[PluginInfo]):
        self._components = components
        self.plugins = plugins

    def names(self, slot: str) -> list[str]:
        return sorted(self._components[slot])

    def get(self, slot: str, name: str) -> Component:
        try:
            return self._components[slot][name]
        except KeyError:
            raise PluginError(f"no {slot} called {name!r}; available: "
                              f"{', '.join(self.names(slot))}") from None


def load_module(spec: str, base: Path | None = None) -> ModuleType:
    """Import a user's plug-in: a module name (found from the cwd or `base`) or a .py path."""
    roots = [p for p in (base, Path.cwd()) if p is not None]
    try:
        if spec.endswith(".py") or os.sep in spec:
            path = next((r / spec for r in roots if (r / spec).is_file()), Path(spec))
            if not path.is_file():
                raise FileNotFoundError(f"no such file {spec}")
            name = path.stem
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
            return module
        for root in roots:
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
        return importlib.import_module(spec)
    except Exception as e:  # a user's module may fail in any way; say which and why
        raise PluginError(f"cannot load plug-in {spec!r}: {type(e).__name__}: {e}") from e


def plugin_manager(extra: Iterable[object] = ()) -> pluggy.PluginManager:
    """Built-ins, then entry points of the `vle_kit` group, then `extra` modules or objects."""
    pm = pluggy.PluginManager("vle_kit")
    pm.add_hookspecs(hookspecs)
    for name in builtin_plugins():
        pm.register(importlib.import_module(name), name=name)
    if not os.environ.get(AUTOLOAD_OFF):
        pm.load_setuptools_entrypoints("vle_kit")
    for plugin in extra:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        if pm.get_plugin(name) is None and not pm.is_registered(plugin):
            pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        raise PluginError(str(e)) from e
    return pm


def _check_factory(slot: str, name: str, factory: object, plugin: str) -> None:
    config = getattr(factory, "Config", NoOptions)
    base, shared = BY_NAME[slot].base, BY_NAME[slot].options
    problem = None
    if not isinstance(factory, type):
        problem = f"registers {factory!r}, not a class"
    elif not issubclass(factory, base):
        problem = f"registers {factory.__name__}, which does not subclass {base.__name__}"
    elif not attrs.has(config):
        problem = f"has a Config that is not an attrs class: {config!r}"
    elif shared is not None and not issubclass(config, shared):
        problem = f"has a Config that does not subclass {shared.__name__}"
    if problem:
        raise PluginError(f"{slot} {name!r} from {plugin} {problem}")


def load_registry(extra: Iterable[object] = ()) -> Registry:
    """Call every plug-in's hooks and collect what they register, refusing duplicate names."""
    from vle_kit import __version__

    pm = plugin_manager(extra)
    versions = {pm.get_name(p): d.version for p, d in pm.list_plugin_distinfo()}
    components: dict[str, dict[str, Component]] = {slot.name: {} for slot in SLOTS}
    provides: dict[str, dict[str, list[str]]] = {pm.get_name(p): {} for p in pm.get_plugins()}
    for slot in SLOTS:
        # each implementation is called on its own, not through pm.hook, so that every name
        # it registers is known to come from that plug-in (for messages and `vle-kit plugins`)
        for impl in getattr(pm.hook, slot.hook).get_hookimpls():

            def register(name: str, factory: type, *, _slot=slot.name,
                         _plugin=impl.plugin_name):
                _check_factory(_slot, name, factory, _plugin)
                taken = components[_slot].get(name)
                if taken is not None:
                    raise PluginError(f"{_slot} {name!r} is registered twice: by {taken.plugin} "
                                      f"and by {_plugin}")
                components[_slot][name] = Component(_slot, name, factory, _plugin)
                provides[_plugin].setdefault(_slot, []).append(name)

            impl.function(register=register)
    plugins = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        if name.startswith(f"{BUILTIN_PACKAGE}."):
            version = __version__
        else:
            version = versions.get(name) or getattr(plugin, "__file__", None) or "local"
        plugins.append(PluginInfo(name, version, provides[name]))
    return Registry(components, sorted(plugins, key=lambda p: p.name))
