"""Which installable extra provides each third-party package the parts import.

A gateway installs `forewarn[edge]` and has neither the cloud's training and database stack nor the
dashboard; a subcommand whose part is not installed says which extra to install instead of a traceback.
"""

from __future__ import annotations

__all__ = ["CORE_IMPORTS", "EXTRA_OF_IMPORT", "missing_extra"]

# Imported by `shared`, the simulators and the command line; always installed.
CORE_IMPORTS = frozenset({"numpy", "scipy", "msgspec", "pydantic", "pydantic_settings", "paho"})

# Top-level import name -> the extra whose requirements install it.
EXTRA_OF_IMPORT: dict[str, str] = {
    "onnxruntime": "edge",
    "cryptography": "edge",
    "threadpoolctl": "edge",
    "sklearn": "cloud",
    "skl2onnx": "cloud",
    "onnx": "cloud",
    "joblib": "cloud",
    "psycopg": "cloud",
    "psycopg_pool": "cloud",
    "apscheduler": "cloud",
    "argon2": "cloud",
    "dash": "dashboard",
    "plotly": "dashboard",
    "flask": "dashboard",
    "flask_login": "dashboard",
    "werkzeug": "dashboard",
    "waitress": "dashboard",
    "pymodbus": "connectors",
    "nptdms": "connectors",
    "asyncua": "connectors",
    "google": "connectors",
    "matplotlib": "diagnose",  # protobuf, for Sparkplug B payloads (shared.sparkplug, imported only by them)
}


def missing_extra(error: ModuleNotFoundError) -> str | None:
    """The extra that would provide the module `error` names, or None when it is not one of ours.

    >>> missing_extra(ModuleNotFoundError("No module named 'psycopg'", name="psycopg"))
    'cloud'
    >>> missing_extra(ModuleNotFoundError("No module named 'dash.html'", name="dash.html"))
    'dashboard'
    >>> missing_extra(ModuleNotFoundError("No module named 'nothing'", name="nothing")) is None
    True
    """
    top_level = (error.name or "").partition(".")[0]
    return EXTRA_OF_IMPORT.get(top_level)
