"""Grafana's query and panel behaviour, emulated so that the tests can run the dashboards' InfluxQL against a real
influxd outside Grafana: variable and macro expansion (:func:`substitute`), table frames and transformations
(:func:`table_frames`, :func:`transform`) and the crop image URLs of a table cell (:func:`crop_image_url`).

Test support only: ``facebus grafana push`` (``facebus_tools.grafana``) needs none of it.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from facebus_tools.grafana import crop_mappings

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
        row = dict(zip(keys, key, strict=True))
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
    to group on, or without rows, is dropped) and ``sortBy`` (its first sort field, nulls last). A disabled
    transformation is skipped; any other raises NotImplementedError, so a dashboard cannot use one the tests do
    not check."""
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



def crop_image_url(dashboard: dict, crop_path: str, panel: str | None = None) -> list[str]:
    """The distinct image URLs the dashboard's table cells show for a ``crop_path`` value: every regex value mapping
    whose text ends in ``$1`` (how the crop columns turn a relative path into an ``<img src>``), applied to
    ``crop_path``; only the mappings of the panel titled ``panel`` when given."""
    urls = []
    for mapping in crop_mappings(dashboard, panel):
        pattern = mapping["options"]["pattern"]
        # Grafana's stringToJsRegex: "/re/flags", or a bare pattern anchored at both ends
        regex = pattern[1:pattern.rindex("/")] if pattern.startswith("/") else f"^{pattern}$"
        if re.search(regex, crop_path):
            url = re.sub(regex, mapping["options"]["result"]["text"].replace("$1", r"\1"), crop_path, count=1)
            if url not in urls:
                urls.append(url)
    return urls
