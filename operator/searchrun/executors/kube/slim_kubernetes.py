"""Import the Kubernetes client without its ~1,300 generated modules (about 32 MiB of the operator).

Why: ``import kubernetes`` runs ``kubernetes/client/__init__.py``, which imports every API group
and all ~700 model classes, while the operator calls three APIs with plain-JSON bodies
(``client.py``). Python runs a package's ``__init__`` before any of its submodules, so the only way
to skip it is to put the package in ``sys.modules`` first. ``install()`` (before the first import of
``kubernetes``) puts placeholders there for ``kubernetes``, ``kubernetes.client`` and its ``api``
and ``models`` packages; a placeholder imports the one submodule that defines a name when the name
is first read (``BatchV1Api`` from ``api/batch_v1_api.py``, ``V1Pod`` from ``models/v1_pod.py``).
A name it cannot place runs the real ``__init__`` in the placeholder, so that anything the client
does still works, at the old cost. The classes are the client's own (the same objects the full
import gives); tests/unit/test_slim_kubernetes.py checks every name this package uses of the
client, and the cluster tests use the real client against a real API server through it.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import threading
import types

# names of ``kubernetes.client`` outside its api/ and models/ (a class there is in the module of its
# name in snake case: BatchV1Api in api/batch_v1_api.py, V1ObjectMeta in models/v1_object_meta.py)
_CLIENT = {"ApiClient": "api_client", "Configuration": "configuration", "ApiException": "exceptions"}
_PACKAGES = ("kubernetes", "kubernetes.client", "kubernetes.client.api", "kubernetes.client.models")
_LOCK = threading.RLock()  # the operator's threads (Job watch, I/O pool) may name a class at once


def _module_of(package: str, attr: str):
    """The submodule that defines class ``attr`` of ``package``, or None."""
    if package == "kubernetes.client" and attr in _CLIENT:
        return f"{package}.{_CLIENT[attr]}"
    if not attr[:1].isupper():
        return None
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", attr).lower()
    for sub in ((package,) if package != "kubernetes.client" else (f"{package}.api", f"{package}.models")):
        if importlib.util.find_spec(f"{sub}.{snake}") is not None:
            return f"{sub}.{snake}"
    return None


class _Placeholder(types.ModuleType):
    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        with _LOCK:
            if attr in self.__dict__:  # another thread got it meanwhile
                return self.__dict__[attr]
            name = self.__name__
            module = _module_of(name, attr)
            if module is not None:
                value = getattr(importlib.import_module(module), attr, None)
                if value is not None:
                    setattr(self, attr, value)
                    return value
            elif attr[:1].islower() and importlib.util.find_spec(f"{name}.{attr}") is not None:
                return importlib.import_module(f"{name}.{attr}")  # the import sets the attribute
            self._load()
            if attr in self.__dict__:
                return self.__dict__[attr]
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")

    def _load(self) -> None:
        """The real package: its ``__init__`` run in this module (what ``import`` would have done), once."""
        if self.__dict__.get("_slim_loaded"):
            return
        self.__dict__["_slim_loaded"] = True
        with open(self.__file__, "rb") as f:
            code = compile(f.read(), self.__file__, "exec")
        exec(code, self.__dict__)  # noqa: S102


def install() -> None:
    """Before ``kubernetes`` is first imported; a no-op after (the real package is there)."""
    if "kubernetes" in sys.modules:
        return
    with _LOCK:
        for name in _PACKAGES:
            spec = importlib.util.find_spec(name)
            if spec is None:
                return
            mod = _Placeholder(name)
            mod.__spec__, mod.__file__, mod.__path__ = spec, spec.origin, list(spec.submodule_search_locations)
            mod.__package__ = name
            sys.modules[name] = mod
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, mod)
