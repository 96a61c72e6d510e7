"""``facebus grafana push``: the InfluxDB datasource and the dashboards of ``grafana/`` to a running Grafana.

    facebus grafana push --url http://grafana.local:3000 --token glsa_... [--dashboards DIR] [--datasource FILE]
        [--crops-url URL]

The same files are provisioned by Grafana itself in Docker Compose (``grafana/provisioning``); ``push`` is for a
Grafana that was not started with them. They are installed with the package (``facebus_tools.grafana_files``), so a
non-editable install finds them too. ``grafana-client`` is imported only by :func:`push`.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import logging
import os
import re
from pathlib import Path

from facebus import settings as cfg
from facebus.settings import GrafanaSettings

log = logging.getLogger(__name__)


def grafana_files() -> Path:
    """The folder holding ``dashboards/*.json`` and ``provisioning/``: the installed copy
    (``facebus_tools.grafana_files``, a namespace package of data files), or ``grafana/`` of the source tree when
    running from a checkout (where ``facebus_tools/`` shadows the installed mapping)."""
    spec = importlib.util.find_spec("facebus_tools.grafana_files")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "grafana"


GRAFANA_FILES = grafana_files()
DASHBOARDS_DIR = GRAFANA_FILES / "dashboards"
DATASOURCE_FILE = GRAFANA_FILES / "provisioning" / "datasources" / "influxdb.yaml"
FOLDER_UID, FOLDER_TITLE = "facebus", "facebus"
DEFAULT_CROPS_URL = "http://localhost:8081/crops"  # the "crops" nginx service of docker-compose.yml


def load_dashboards(directory: str | Path = DASHBOARDS_DIR) -> list[dict]:
    """Every ``*.json`` dashboard model in ``directory``, sorted by file name.

    Raises FileNotFoundError when the folder does not exist or holds no dashboard, ValueError (json.JSONDecodeError)
    naming the file when one is not valid JSON.
    """
    files = sorted(Path(directory).glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no dashboard *.json in {directory}")
    dashboards = []
    for file in files:
        try:
            dashboards.append(json.loads(file.read_text()))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{file}: not valid JSON: {exc}") from exc
    return dashboards


# --- The crops base URL ---------------------------------------------------------------------------------------------

_CROP_URL_TEXT = re.compile(r"^https?://.*?/?\$1$")


def with_crops_url(dashboard: dict, crops_url: str) -> dict:
    """A copy of ``dashboard`` whose crop images and links use ``crops_url`` (e.g. ``https://host/crops``): the
    ``crops_url`` variable's default and the base of the regex value mappings. Grafana does not expand variables in
    value mappings, so the image base is written into the dashboard here rather than taken from the variable."""
    crops_url = crops_url.rstrip("/")
    result = copy.deepcopy(dashboard)
    for variable in result.get("templating", {}).get("list", []):
        if variable.get("name") == "crops_url":
            variable["query"] = crops_url
            variable["current"] = {"selected": True, "text": crops_url, "value": crops_url}
            variable["options"] = [{"selected": True, "text": crops_url, "value": crops_url}]
    for mapping in crop_mappings(result):
        mapping["options"]["result"]["text"] = f"{crops_url}/$1"
    return result


def crop_mappings(dashboard: dict, title: str | None = None):
    for panel in dashboard.get("panels", []):
        if title is not None and panel.get("title") != title:
            continue
        field_config = panel.get("fieldConfig", {})
        config_sets = [field_config.get("defaults", {})]
        for override in field_config.get("overrides", []):
            config_sets.append({p["id"]: p["value"] for p in override.get("properties", [])})
        for config in config_sets:
            for mapping in config.get("mappings") or []:
                text = mapping.get("options", {}).get("result", {}).get("text", "")
                if mapping.get("type") == "regex" and _CROP_URL_TEXT.match(text):
                    yield mapping


# --- Pushing to a running Grafana -----------------------------------------------------------------------------------

_ENV = re.compile(r"\$\$|\$\{(\w+)\}|\$(\w+)")


def expand_env(value, environ: dict | None = None):
    """Grafana's provisioning expansion, applied to every string in ``value`` (nested dicts and lists): ``$VAR`` and
    ``${VAR}`` become the variable (empty when unset), ``$$`` a single ``$``."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):
        return _ENV.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1) or m.group(2), ""), value)
    if isinstance(value, dict):
        return {k: expand_env(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env) for v in value]
    return value


_API_KEYS = ("uid", "name", "type", "access", "url", "user", "database", "basicAuth", "basicAuthUser",
             "withCredentials", "isDefault", "jsonData", "secureJsonData")


def load_datasources(file: str | Path = DATASOURCE_FILE, environ: dict | None = None) -> list[dict]:
    """The ``datasources`` of a Grafana provisioning YAML file, environment expanded, as ``/api/datasources`` bodies
    (provisioning-only keys such as ``editable`` and ``version`` dropped). Raises FileNotFoundError, ValueError."""
    import yaml

    document = yaml.safe_load(Path(file).read_text()) or {}
    sources = document.get("datasources")
    if not isinstance(sources, list) or not sources:
        raise ValueError(f"{file}: no datasources list")
    return [{k: v for k, v in expand_env(source, environ).items() if k in _API_KEYS} for source in sources]


def push(url: str, token: str, dashboards_dir: str | Path = DASHBOARDS_DIR,
         datasource_file: str | Path = DATASOURCE_FILE, crops_url: str | None = None, timeout_s: float = 10.0) -> dict:
    """Create or update the datasource(s) of ``datasource_file`` (by uid: ``PUT /api/datasources/uid/<uid>`` when it
    exists, ``POST /api/datasources`` otherwise), find or create the folder ``facebus`` (:func:`_folder_uid`), and save
    every dashboard of ``dashboards_dir`` into it (``POST /api/dashboards/db``, ``overwrite: true``), authenticated
    with the service account token ``token`` (``Authorization: Bearer <token>``).

    ``crops_url``: where browsers find the crops, written into the dashboards (:func:`with_crops_url`); default: as
    the files say (``http://localhost:8081/crops``).

    Returns ``{"datasources": [uid, ...], "dashboards": [uid, ...]}``. Raises grafana_client's GrafanaException
    (HTTP 4xx/5xx, e.g. GrafanaUnauthorizedError for a bad token), requests.RequestException (Grafana unreachable),
    FileNotFoundError / ValueError for bad input files.
    """
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError

    datasources = load_datasources(datasource_file)
    dashboards = load_dashboards(dashboards_dir)
    api = GrafanaApi.from_url(url=url, credential=token, timeout=timeout_s)

    for source in datasources:
        try:
            api.datasource.get_datasource_by_uid(source["uid"])
            exists = True
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            exists = False
        if exists:
            api.datasource.update_datasource_by_uid(source["uid"], source)
        else:
            api.datasource.create_datasource(source)
        log.info("datasource %s %s", source["uid"], "updated" if exists else "created")

    folder_uid = _folder_uid(api, GrafanaClientError)
    saved = []
    for dashboard in dashboards:
        model = with_crops_url(dashboard, crops_url) if crops_url else copy.deepcopy(dashboard)
        model.pop("id", None)  # Grafana matches on uid; a stale numeric id would be refused
        api.dashboard.update_dashboard(
            {"dashboard": model, "folderUid": folder_uid, "overwrite": True, "message": "facebus grafana push"}
        )
        saved.append(model.get("uid"))
        log.info("dashboard %s (%s) saved", model.get("uid"), model.get("title"))
    return {"datasources": [s["uid"] for s in datasources], "dashboards": saved}


def _folder_uid(api, not_found_error) -> str:
    """The uid of the folder "facebus": uid ``facebus``, else a top-level folder of that title (e.g. created by the
    alert rule provisioning, which names folders by title), else a new folder with uid ``facebus``."""
    try:
        api.folder.get_folder(FOLDER_UID)
        return FOLDER_UID
    except not_found_error as exc:
        if exc.status_code != 404:
            raise
    for folder in api.folder.get_all_folders() or []:
        if folder.get("title") == FOLDER_TITLE:
            return folder["uid"]
    api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
    log.info("folder %s created", FOLDER_UID)
    return FOLDER_UID


# --- CLI ------------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``facebus grafana`` subcommands (``push``) on ``parser``."""
    actions = parser.add_subparsers(dest="grafana_command", required=True, metavar="ACTION")
    p = actions.add_parser("push", help="create/update the InfluxDB datasource and the dashboards in a running Grafana")
    cfg.add_arguments(p, GrafanaSettings)
    p.add_argument("--dashboards", default=str(DASHBOARDS_DIR),
                   help="folder of dashboard *.json (default: %(default)s)")
    p.add_argument("--datasource", default=str(DATASOURCE_FILE),
                   help="provisioning YAML of the datasource; ${VAR} read from this environment (default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    """``facebus grafana push``: 0 when everything was saved, 2 for a missing --url/--token, 1 on any failure.
    Raises pydantic's ValidationError for an invalid setting (the CLI reports it)."""
    if args.grafana_command != "push":
        return 2
    settings = cfg.load(GrafanaSettings, args)
    if not settings.url or not (settings.token and settings.token.get_secret_value()):
        log.error("facebus grafana push needs --url and --token (or FACEBUS_GRAFANA_URL / FACEBUS_GRAFANA_TOKEN)")
        return 2
    import requests
    from grafana_client.client import GrafanaException

    try:
        result = push(settings.url, settings.token.get_secret_value(), args.dashboards, args.datasource,
                      settings.crops_url)
    except (GrafanaException, requests.RequestException, OSError, ValueError) as exc:
        log.error("grafana push to %s failed: %s", settings.url, exc)
        return 1
    log.info("pushed datasources %s and dashboards %s to %s", result["datasources"], result["dashboards"], settings.url)
    return 0
