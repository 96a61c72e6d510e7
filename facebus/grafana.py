"""Grafana for facebus: load the dashboards in ``grafana/dashboards``, expand their InfluxQL the way Grafana does (to
run them outside Grafana, as the tests do), and push the datasource and dashboards to a running Grafana.

    facebus grafana push --url http://grafana.local:3000 --token glsa_... [--dashboards DIR] [--datasource FILE]
        [--crops-url URL]

The same files are provisioned by Grafana itself in Docker Compose (``grafana/provisioning``); ``push`` is for a
Grafana that was not started with them. ``grafana-client`` is imported only by :func:`push`.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import re
from datetime import datetime, timedelta
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS_DIR = ROOT / "grafana" / "dashboards"
DATASOURCE_FILE = ROOT / "grafana" / "provisioning" / "datasources" / "influxdb.yaml"
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


# --- Grafana's variable and macro expansion for InfluxQL ------------------------------------------------------------


class Raw(str):
    """A variable value inserted as is, never escaped: what Grafana does with a variable's custom "All" value
    (``allValue``, e.g. ``.*``)."""


def all_value(variable: dict, options: list[str]) -> Raw | list[str]:
    """The value Grafana gives a variable when "All" is selected: its ``allValue`` verbatim when set, otherwise every
    option (``options``: the values its query returned)."""
    if variable.get("allValue"):
        return Raw(variable["allValue"])
    return list(options)


def escape_regex(value: str) -> str:
    r"""Grafana's ``escapeRegex``: ``\ ^ $ * + ? . ( ) | [ ] { } /`` get a backslash (``/`` too, so a value cannot end
    an InfluxQL ``/regex/`` literal)."""
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda m: "\\" + m.group(0), value)


def format_interval(interval: timedelta) -> str:
    """Grafana's ``gtime.FormatInterval``: the largest whole unit of ``y d h m s ms`` (``10s``, ``2m``, ``500ms``)."""
    ms = int(interval / timedelta(milliseconds=1))
    for unit, size in (("y", 365 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return f"{max(ms, 1)}ms"


# $x, [[x]], [[x:f]], ${x}, ${x:f}
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")
_REGEX_LITERAL = re.compile(r"(?:=~|!~)\s*/(?:[^/\\\n]|\\.)*/")  # InfluxQL: "tag" =~ /.../


def _format(value, fmt: str | None, in_regex: bool) -> str:
    if isinstance(value, Raw) or fmt in ("raw", "text"):
        return value if isinstance(value, str) else ",".join(value)
    values = [value] if isinstance(value, str) else [str(v) for v in value]
    if fmt == "csv":
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "regex" or in_regex or len(values) != 1:
        escaped = [escape_regex(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    return values[0]


def _ms(moment: datetime | float) -> int:
    return int(moment.timestamp() * 1000) if isinstance(moment, datetime) else int(moment)


def substitute(query: str, variables: dict, time_from: datetime | int, time_to: datetime | int,
               interval: timedelta | float) -> str:
    """``query`` as Grafana 10/11 sends it to InfluxDB: dashboard variables first (the browser), then the InfluxQL
    macros (Grafana's server).

    - ``variables``: name → value. A ``str`` is one selected value, a ``list[str]`` several, a :class:`Raw` is
      inserted verbatim (a custom "All" value, see :func:`all_value`). Inside a ``=~ /.../`` regex, or with more
      than one value, values are regex-escaped and several become ``(v1|v2)``; elsewhere one value goes in as is.
      Syntaxes ``$name``, ``${name}``, ``[[name]]`` and formats ``${name:regex|raw|text|csv|pipe}``. Unknown names
      are left alone, as Grafana does.
    - ``time_from``/``time_to``: aware datetimes or ms since the epoch → ``$timeFilter`` =
      ``time >= <from>ms and time <= <to>ms``; ``$__from``/``$__to`` = the ms numbers.
    - ``interval``: a timedelta or seconds → ``$__interval`` / ``$interval`` (e.g. ``10s``) and ``$__interval_ms``.
    """
    regex_spans = [m.span() for m in _REGEX_LITERAL.finditer(query)]

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(5)
        if name not in variables:
            return match.group(0)
        in_regex = any(start <= match.start() < end for start, end in regex_spans)
        return _format(variables[name], fmt, in_regex)

    text = _VARIABLE.sub(replace, query)
    start_ms, end_ms = _ms(time_from), _ms(time_to)
    step = interval if isinstance(interval, timedelta) else timedelta(seconds=interval)
    interval_text = format_interval(step)
    text = text.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
    text = text.replace("$__from", str(start_ms)).replace("$__to", str(end_ms))
    text = text.replace("$interval", interval_text)
    text = text.replace("$__interval_ms", str(int(step / timedelta(milliseconds=1))))
    return text.replace("$__interval", interval_text)


# --- Grafana's table frames and transformations --------------------------------------------------------------------


def table_frames(body: dict) -> list[list[dict]]:
    """An InfluxDB ``/query`` answer (its first result) as Grafana's InfluxQL datasource hands it to a table panel
    (``resultFormat: table``): one frame per series, a frame being its rows as dicts in column order, the time column
    named ``Time`` (ms since the epoch; RFC 3339 answers are converted) and the series' tags as columns."""
    frames = []
    for series in body["results"][0].get("series", []):
        tags = series.get("tags") or {}
        frame = []
        for values in series["values"]:
            row = {}
            for column, value in zip(series["columns"], values, strict=True):
                if column == "time":
                    row["Time"] = value if isinstance(value, int | float) or value is None else _ms(
                        datetime.fromisoformat(value.replace("Z", "+00:00")))
                else:
                    row[column] = value
            frame.append({**row, **tags})
        frames.append(frame)
    return frames


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # NaN is no number


def _reduce(values: list, reducer: str):
    """Grafana's field reducers (``fieldReducer.ts``), nulls ignored as its default null mode does; ``max``, ``min``,
    ``sum`` and ``mean`` only see numbers (and times), as for a string field Grafana computes none."""
    present = [v for v in values if v is not None and v == v]
    numbers = [v for v in present if _is_number(v)]
    if reducer == "count":
        return len(present)
    if reducer == "countAll":
        return len(values)
    if reducer == "first":
        return values[0] if values else None
    if reducer == "last":
        return values[-1] if values else None
    if reducer == "firstNotNull":
        return present[0] if present else None
    if reducer == "lastNotNull":
        return present[-1] if present else None
    if reducer == "max":
        return max(numbers) if numbers else None
    if reducer == "min":
        return min(numbers) if numbers else None
    if reducer == "sum":
        return sum(numbers)
    if reducer == "mean":
        return sum(numbers) / len(numbers) if numbers else None
    if reducer == "distinctCount":
        return len(set(present))
    if reducer == "uniqueValues":
        return list(dict.fromkeys(values))
    if reducer == "allValues":
        return list(values)
    raise NotImplementedError(f"reducer {reducer!r} is not emulated")


def _group_by(frame: list[dict], fields: dict) -> list[dict]:
    keys = [name for name, o in fields.items() if o.get("operation") == "groupby"]
    if not keys:
        return frame
    columns = list(frame[0]) if frame else []
    if not any(k in columns for k in keys):
        return []  # Grafana drops a frame without the fields to group on
    groups: dict[tuple, list[dict]] = {}  # in the order the groups first appear, as Grafana's Map keeps them
    for row in frame:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    out = []
    for key, members in groups.items():
        row = dict(zip(keys, key))
        for column in columns:
            options = fields.get(column) or {}
            operation = options.get("operation")
            reducers = ["count"] if operation == "count" else options.get("aggregations") or []
            if operation in ("takefirst", "takelast"):
                raise NotImplementedError(f"groupBy operation {operation!r} is not emulated")
            if operation not in ("aggregate", "count"):
                continue
            values = [m.get(column) for m in members]
            for reducer in reducers:
                row[f"{column} ({reducer})"] = _reduce(values, reducer)
        out.append(row)
    return out


def _sort_by(frame: list[dict], sort: list[dict]) -> list[dict]:
    if not sort or not sort[0].get("field"):
        return frame
    name, desc = sort[0]["field"], bool(sort[0].get("desc"))
    present = [r for r in frame if r.get(name) is not None]
    missing = [r for r in frame if r.get(name) is None]
    return sorted(present, key=lambda r: r[name], reverse=desc) + missing


def transform(frames: list[list[dict]], transformations: list[dict]) -> list[list[dict]]:
    """``frames`` (see :func:`table_frames`) through a panel's ``transformations`` as Grafana's browser applies them,
    for the ones the dashboards use: ``groupBy`` (per frame; operations ``groupby``, ``aggregate`` and ``count``;
    result columns named ``<field> (<reducer>)``, groups in order of first appearance; a frame without the fields
    to group on, or without rows, is dropped) and ``sortBy`` (its first sort field, nulls last). A disabled transformation is skipped; any other raises NotImplementedError, so a
    dashboard cannot use one the tests do not check."""
    for transformation in transformations:
        if transformation.get("disabled"):
            continue
        kind, options = transformation["id"], transformation.get("options") or {}
        if kind == "groupBy":
            frames = [_group_by(frame, options.get("fields") or {}) for frame in frames]
            frames = [frame for frame in frames if frame]
        elif kind == "sortBy":
            frames = [_sort_by(frame, options.get("sort") or []) for frame in frames]
        else:
            raise NotImplementedError(f"transformation {kind!r} is not emulated")
    return frames


# --- The crops base URL ---------------------------------------------------------------------------------------------

_CROP_URL_TEXT = re.compile(r"^https?://.*?/?\$1$")


def crop_image_url(dashboard: dict, crop_path: str, panel: str | None = None) -> list[str]:
    """The distinct image URLs the dashboard's table cells show for a ``crop_path`` value: every regex value mapping
    whose text ends in ``$1`` (how the crop columns turn a relative path into an ``<img src>``), applied to
    ``crop_path``; only the mappings of the panel titled ``panel`` when given."""
    urls = []
    for mapping in _crop_mappings(dashboard, panel):
        pattern = mapping["options"]["pattern"]
        # Grafana's stringToJsRegex: "/re/flags", or a bare pattern anchored at both ends
        regex = pattern[1:pattern.rindex("/")] if pattern.startswith("/") else f"^{pattern}$"
        if re.search(regex, crop_path):
            url = re.sub(regex, mapping["options"]["result"]["text"].replace("$1", r"\1"), crop_path, count=1)
            if url not in urls:
                urls.append(url)
    return urls


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
    for mapping in _crop_mappings(result):
        mapping["options"]["result"]["text"] = f"{crops_url}/$1"
    return result


def _crop_mappings(dashboard: dict, title: str | None = None):
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
    p.add_argument("--url", default=os.environ.get("FACEBUS_GRAFANA_URL"),
                   help="Grafana base URL, e.g. http://grafana.local:3000 [env FACEBUS_GRAFANA_URL]")
    p.add_argument("--token", default=os.environ.get("FACEBUS_GRAFANA_TOKEN"),
                   help="token of a service account with the Admin role [env FACEBUS_GRAFANA_TOKEN]")
    p.add_argument("--dashboards", default=str(DASHBOARDS_DIR),
                   help="folder of dashboard *.json (default: %(default)s)")
    p.add_argument("--datasource", default=str(DATASOURCE_FILE),
                   help="provisioning YAML of the datasource; ${VAR} read from this environment (default: %(default)s)")
    p.add_argument("--crops-url", default=None,
                   help=f"where browsers find the crops (default: as in the dashboards, {DEFAULT_CROPS_URL})")


def main(args: argparse.Namespace) -> int:
    """``facebus grafana push``: 0 when everything was saved, 2 for a missing --url/--token, 1 on any failure."""
    if args.grafana_command != "push":
        return 2
    if not args.url or not args.token:
        log.error("facebus grafana push needs --url and --token (or FACEBUS_GRAFANA_URL / FACEBUS_GRAFANA_TOKEN)")
        return 2
    import requests
    from grafana_client.client import GrafanaException

    try:
        result = push(args.url, args.token, args.dashboards, args.datasource, args.crops_url)
    except (GrafanaException, requests.RequestException, OSError, ValueError) as exc:
        log.error("grafana push to %s failed: %s", args.url, exc)
        return 1
    log.info("pushed datasources %s and dashboards %s to %s", result["datasources"], result["dashboards"], args.url)
    return 0
