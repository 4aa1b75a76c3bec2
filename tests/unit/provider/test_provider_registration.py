"""The installed package registers with Airflow: provider info and the plugin, via the real CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import flux_provider
from tests.support import REPO


def _airflow(tmp_path: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    done = subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_provider_info_matches_airflows_schema():
    import jsonschema
    from airflow import providers_manager

    schema_path = Path(providers_manager.__file__).with_name("provider_info.schema.json")
    info = flux_provider.get_provider_info()
    jsonschema.validate(info, json.loads(schema_path.read_text()))
    assert info["package-name"] == "airflow-provider-flux"
    assert info["versions"][0] == metadata.version("airflow-provider-flux") == flux_provider.__version__


def test_entry_points_are_declared():
    dist = metadata.distribution("airflow-provider-flux")
    groups = {(ep.group, ep.value) for ep in dist.entry_points}
    assert ("apache_airflow_provider", "flux_provider:get_provider_info") in groups
    assert ("airflow.plugins", "flux_provider.plugin:FluxPlugin") in groups


def test_airflow_providers_list_shows_flux(tmp_path):
    providers = json.loads(_airflow(tmp_path, "providers", "list", "-o", "json"))
    flux = [p for p in providers if p["package_name"] == "airflow-provider-flux"]
    assert flux and flux[0]["version"] == flux_provider.__version__


def test_airflow_plugins_loads_flux_from_the_entry_point(tmp_path):
    plugins = json.loads(_airflow(tmp_path, "plugins", "-o", "json"))
    flux = [p for p in plugins if p["name"] == "flux"]
    assert len(flux) == 1
    assert "airflow-provider-flux" in flux[0]["source"]
    # what the plugin brings: the API app, the nav link, the controller's listener
    assert any("flux" in str(app) for app in flux[0]["fastapi_apps"])
    assert any(v["name"] == "Data sets" for v in flux[0]["external_views"])
    assert any("flux_provider.throttle.listener" in str(x) for x in flux[0]["listeners"])


def test_the_plugins_folder_file_loads_once_beside_the_entry_point(tmp_path):
    """A deployment that also copies plugins/flux_plugin.py into AIRFLOW_HOME/plugins gets one flux plugin."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "flux_plugin.py").write_text((REPO / "plugins" / "flux_plugin.py").read_text())
    plugins = json.loads(_airflow(tmp_path, "plugins", "-o", "json"))
    flux = [p for p in plugins if p["name"] == "flux"]
    assert len(flux) == 1, [p["source"] for p in plugins]
    assert flux[0]["source"] == "$PLUGINS_FOLDER/flux_plugin.py"  # the folder file won, the entry point yielded
    assert flux[0]["listeners"] == ["flux_provider.throttle.listener"]


def test_airflow_config_list_shows_the_flux_options_with_their_defaults(tmp_path):
    """Every [flux] option the provider reads is declared (description, default) and shown by Airflow."""
    out = " ".join(
        _airflow(
            tmp_path, "config", "list", "--section", "flux", "--include-descriptions", "--include-env-vars"
        ).split()
    )
    for name, (description, _kind, default) in flux_provider.CONFIG_OPTIONS.items():
        assert f"AIRFLOW__FLUX__{name.upper()}" in out and description.split(".")[0] in out, name
        assert _airflow(tmp_path, "config", "get-value", "flux", name).strip() == default
    sources = [path.read_text() for path in Path(flux_provider.__file__).parent.rglob("*.py")]
    read = {m for text in sources for m in re.findall(r'flux_(?:str|float|int)\(\s*"(\w+)"', text)}
    assert read == set(flux_provider.CONFIG_OPTIONS)  # nothing read that is not declared, nothing declared unread
    # and no [flux] option is read around flux_provider.config, with a default of its own
    assert not [m for text in sources for m in re.findall(r'conf\.get\w*\(\s*"flux"', text)]
