"""The ``[flux]`` options, read from Airflow's configuration with the defaults the provider info states."""

from __future__ import annotations

from flux_provider import CONFIG_OPTIONS


def _read(name: str, kind: str):
    from airflow.configuration import conf

    text, declared, default = CONFIG_OPTIONS[name]
    if declared != kind:
        raise TypeError(f"[flux] {name} is declared as {declared}, read as {kind}")
    getter = {"string": conf.get, "float": conf.getfloat, "integer": conf.getint}[kind]
    return getter("flux", name, fallback={"string": str, "float": float, "integer": int}[kind](default))


def flux_str(name: str) -> str:
    return _read(name, "string")


def flux_float(name: str) -> float:
    return _read(name, "float")


def flux_int(name: str) -> int:
    return _read(name, "integer")


__all__ = ["flux_float", "flux_int", "flux_str"]
