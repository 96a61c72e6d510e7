"""Grafana: the provisioning files and dashboards are well formed, and every dashboard query, run the way Grafana
runs it (variables and macros expanded by tests/support/grafana_emulation.py) against influxd 1.6.7 holding the data of
a real demo run (the Hamilton clip through publisher → recognizer → archiver), shows what a user expects.

No Grafana runs here (it cannot be installed): `facebus grafana push` is tested against a local HTTP stub that
records the requests Grafana's HTTP API would receive.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import yaml

from archiver.influx import V1Writer
from facebus.settings import MODEL_DEFAULTS, InfluxSettings
from facebus_tools import grafana
from tests.conftest import ROOT
from tests.support import grafana_emulation as emulation
from tests.support.grafana_stub import serve_grafana_stub

pytestmark = pytest.mark.integration

GRAFANA_DIR = ROOT / "grafana"
DASHBOARD_FILES = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
DATASOURCE_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "influxdb.yaml"
ALERT_FILE = GRAFANA_DIR / "provisioning" / "alerting" / "restricted.yaml"
PROVIDER_FILE = GRAFANA_DIR / "provisioning" / "dashboards" / "facebus.yaml"
DS_REF = {"type": "influxdb", "uid": "facebus-influxdb"}
INTERVAL_S = 10  # what Grafana picks for "last 1 hour" here: 1 h / ~1000 points → 5 s, raised to the datasource's 10 s
TAGS = {"time", "person", "category", "device", "service"}  # not values: a row "has a value" when a field is not null/0
PEOPLE = {"Alex_Lacamoire", "Barack_Obama", "Lin_Manuel_Miranda", "unknown"}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def targets(dashboard: dict):
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def provisioned_uids() -> set[str]:
    return {source["uid"] for source in yaml.safe_load(DATASOURCE_FILE.read_text())["datasources"]}


# --- Structure ------------------------------------------------------------------------------------------------------


def test_there_are_the_three_dashboards():
    assert {p.name for p in DASHBOARD_FILES} >= {"entries.json", "visits.json", "health.json"}
    titles = {load(p)["title"] for p in DASHBOARD_FILES}
    assert titles >= {"Entries log", "Visits", "System health"}
    uids = [load(p)["uid"] for p in DASHBOARD_FILES]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_structure(path):
    dashboard = load(path)
    assert isinstance(dashboard.get("schemaVersion"), int) and dashboard["schemaVersion"] >= 36
    assert dashboard.get("uid") and dashboard.get("title")
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids {ids}"
    titles = [p["title"] for p in panels]
    assert len(titles) == len(set(titles)), f"duplicate panel titles {titles}"
    for panel in panels:
        assert panel.get("title", "").strip(), f"panel {panel['id']} has no title"
        assert panel.get("description", "").strip(), f"panel {panel['title']!r} has no description"
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["y"] >= 0 and grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24
    for a in panels:
        for b in panels:
            if a["id"] < b["id"]:
                ga, gb = a["gridPos"], b["gridPos"]
                overlap = (ga["x"] < gb["x"] + gb["w"] and gb["x"] < ga["x"] + ga["w"]
                           and ga["y"] < gb["y"] + gb["h"] and gb["y"] < ga["y"] + ga["h"])
                assert not overlap, f"panels {a['title']!r} and {b['title']!r} overlap"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_datasource_reference_is_the_provisioned_influxdb(path):
    dashboard, uids = load(path), provisioned_uids()
    refs = [("panel " + p["title"], p["datasource"]) for p in dashboard["panels"]]
    refs += [(f"target {p['title']}/{t['refId']}", t["datasource"]) for p, t in targets(dashboard)]
    refs += [("variable " + v["name"], v["datasource"]) for v in dashboard["templating"]["list"] if "datasource" in v]
    assert refs
    for where, ref in refs:
        assert ref == DS_REF, f"{where}: {ref}"
        assert ref["uid"] in uids


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_queries_are_raw_influxql_with_grafana_macros(path):
    for panel, target in targets(load(path)):
        query, where = target["query"], f"{panel['title']}/{target['refId']}"
        assert target["rawQuery"] is True and query.lstrip().upper().startswith("SELECT"), where
        assert "$timeFilter" in query, where
        if re.search(r"GROUP BY time\(", query, re.IGNORECASE):
            assert "GROUP BY time($__interval)" in query and "fill(" in query, where
        variables = {v["name"] for v in load(path)["templating"]["list"]}
        for name in re.findall(r"\$(\w+)", query):
            assert name in ("timeFilter", "__interval") or name in variables, where


def test_provisioning_files_parse():
    for file in sorted((GRAFANA_DIR / "provisioning").rglob("*.yaml")):
        document = yaml.safe_load(file.read_text())
        assert document["apiVersion"] == 1, file
    (source,) = yaml.safe_load(DATASOURCE_FILE.read_text())["datasources"]
    assert source["type"] == "influxdb" and source["uid"] == "facebus-influxdb" and source["access"] == "proxy"
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["url"].startswith("${") and source["jsonData"]["dbName"].startswith("${")
    (provider,) = yaml.safe_load(PROVIDER_FILE.read_text())["providers"]
    assert provider["type"] == "file" and provider["folder"] == "facebus"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_alert_rule_uses_the_provisioned_datasource():
    (group,) = yaml.safe_load(ALERT_FILE.read_text())["groups"]
    (rule,) = group["rules"]
    queries = {d["refId"]: d for d in rule["data"]}
    assert rule["condition"] in queries
    for item in rule["data"]:
        assert item["datasourceUid"] in provisioned_uids() | {"__expr__"}
    influx = [d for d in rule["data"] if d["datasourceUid"] != "__expr__"]
    assert [d["datasourceUid"] for d in influx] == ["facebus-influxdb"]
    assert influx[0]["relativeTimeRange"] == {"from": 300, "to": 0}
    assert "'restricted'" in influx[0]["model"]["query"] and "$timeFilter" in influx[0]["model"]["query"]
    evaluator = queries[rule["condition"]]["model"]["conditions"][0]["evaluator"]
    assert evaluator == {"type": "gt", "params": [0]}


def test_substitute_expands_like_grafana():
    query = ('SELECT x FROM m WHERE $timeFilter AND "p" =~ /^$person$/ AND "d" =~ /^${device:regex}$/ '
             'GROUP BY time($__interval)')
    start = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    out = emulation.substitute(query, {"person": ["a.b", "c/d"], "device": "door"},
                               start, start + timedelta(hours=1), 10)
    assert out == (f'SELECT x FROM m WHERE time >= {int(start.timestamp() * 1000)}ms and time <= '
                   f'{int(start.timestamp() * 1000) + 3_600_000}ms AND "p" =~ /^(a\\.b|c\\/d)$/ AND "d" =~ /^door$/ '
                   'GROUP BY time(10s)')
    assert (emulation.substitute("$__interval $__interval_ms $interval", {}, 0, 1, timedelta(minutes=2))
            == "2m 120000 2m")
    assert (emulation.substitute('"p" =~ /^$p$/ $q', {"p": emulation.Raw(".*"), "q": "x.y"}, 0, 1, 1)
            == '"p" =~ /^.*$/ x.y')
    assert emulation.substitute("$unknown", {}, 0, 1, 1) == "$unknown"


# --- Queries on the data of a real demo run -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(demo_run):
    """The session's demo run (tests/conftest.py): (pipeline, time the run ended)."""
    return demo_run


@pytest.fixture(scope="module")
def influx(demo):
    pipeline, _ = demo
    writer = V1Writer(InfluxSettings(url=pipeline.influxd.url, database="facebus", api="v1"))
    yield writer
    writer.close()


def rows(body: dict) -> list[dict]:
    """Every row of every series of the first result, as dicts, with the series' tags merged in."""
    out = []
    for series in body["results"][0].get("series", []):
        for values in series["values"]:
            out.append({**series.get("tags", {}), **dict(zip(series["columns"], values, strict=True))})
    return out


class Dashboards:
    """The dashboards with their variable options read from InfluxDB, and their queries run for "last 1 hour"."""

    def __init__(self, influx: V1Writer, end: datetime):
        self.influx, self.end, self.start = influx, end, end - timedelta(hours=1)
        self.by_uid = {d["uid"]: d for d in grafana.load_dashboards(GRAFANA_DIR / "dashboards")}
        self.options: dict[str, dict[str, list[str]]] = {}
        for uid, dashboard in self.by_uid.items():
            self.options[uid] = {}
            for variable in dashboard["templating"]["list"]:
                if variable["type"] == "query":
                    found = rows(self.run(variable["query"], {}))  # one series per measurement: dedup as Grafana does
                    self.options[uid][variable["name"]] = sorted({r["value"] for r in found})

    def variables(self, uid: str, **selected) -> dict:
        """Every variable of the dashboard at "All" (its default; crops_url at its default) unless ``selected``."""
        values = {}
        for variable in self.by_uid[uid]["templating"]["list"]:
            name = variable["name"]
            if name in selected:
                values[name] = selected[name]
            elif variable["type"] == "query":
                values[name] = emulation.all_value(variable, self.options[uid][name])
            else:
                values[name] = variable["current"]["value"]
        return values

    def run(self, query: str, variables: dict) -> dict:
        return self.influx.query(emulation.substitute(query, variables, self.start, self.end, INTERVAL_S))

    def panel(self, uid: str, title: str) -> dict:
        (panel,) = [p for p in self.by_uid[uid]["panels"] if p["title"] == title]
        return panel

    def panel_rows(self, uid: str, title: str, ref: str = "A", **selected) -> list[dict]:
        (target,) = [t for t in self.panel(uid, title)["targets"] if t["refId"] == ref]
        return rows(self.run(target["query"], self.variables(uid, **selected)))


@pytest.fixture(scope="module")
def boards(demo, influx):
    return Dashboards(influx, demo[1])


@pytest.fixture(scope="module")
def archived(demo) -> dict[str, str]:
    """person → category of the entries this run archived, read independently of the dashboards (the demo's own
    `SELECT *`): the clip's three people and the unknown audience. The dashboard checks compare with what was
    archived; only test_the_run_archived_the_people_of_the_clip depends on it."""
    pipeline, _ = demo
    stored = {row.person: row.category for row in pipeline.entries()}
    assert "Lin_Manuel_Miranda" in stored and "unknown" in stored
    return stored


@pytest.fixture(scope="module")
def entry_counts(influx, archived) -> dict[str, int]:
    """person → entries this run archived (read with the demo's `SELECT *`, not through the dashboards). The clip is
    shorter than the 120 s throttle window: one entry per named person, and for the unknown faces one per visitor id
    plus one for those the recognizer gave no visitor (docs/mqtt.md, Throttling)."""
    body = influx.query('SELECT * FROM "face_entry" WHERE time > now() - 1d')
    stored = rows(body)
    counts = {person: sum(1 for r in stored if r["person"] == person) for person in archived}
    assert {p: n for p, n in counts.items() if p != "unknown"} == dict.fromkeys(set(archived) - {"unknown"}, 1)
    unknown = [r for r in stored if r["person"] == "unknown"]
    keys = {r.get("visitor_id") or ("device", r["device"]) for r in unknown}
    assert len(unknown) == len(keys), f"one entry per visitor, else per device: {unknown}"
    return counts


def test_the_run_archived_the_people_of_the_clip(archived):
    assert set(archived) == PEOPLE


def test_variable_queries_list_the_people_devices_and_categories(boards, archived):
    for uid in ("facebus-entries", "facebus-visits"):
        assert set(boards.options[uid]["person"]) == set(archived) <= PEOPLE
        assert boards.options[uid]["device"] == ["hamilton"]
    assert boards.options["facebus-health"]["device"] == ["hamilton"]
    assert set(boards.options["facebus-entries"]["category"]) == set(archived.values())


def test_every_query_of_every_panel_runs(boards, tmp_path_factory):
    """No query is refused; the row count of each is written to grafana-queries.json (and printed) for the record."""
    report = []
    for uid, dashboard in boards.by_uid.items():
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                report.append({"dashboard": dashboard["title"], "query_of": f"variable {variable['name']}",
                               "query": variable["query"], "rows": len(rows(boards.run(variable["query"], {}))),
                               "options": len(boards.options[uid][variable["name"]])})
        for panel, target in targets(dashboard):
            body = boards.run(target["query"], boards.variables(uid))
            emulation.transform(emulation.table_frames(body), panel.get("transformations", []))  # none it cannot apply
            found = rows(body)
            with_value = [r for r in found if any(v not in (None, 0) for k, v in r.items() if k not in TAGS)]
            report.append({"dashboard": dashboard["title"], "query_of": f"{panel['title']} / {target['refId']}",
                           "query": target["query"], "rows": len(found), "rows_with_a_value": len(with_value)})
    out = tmp_path_factory.getbasetemp() / "grafana-queries.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nquery report: {out}")
    for item in report:
        print(f"{item['dashboard']:<14} {item['query_of']:<45} rows={item['rows']:<5} "
              f"with a value={item.get('rows_with_a_value', '-')} options={item.get('options', '-')}")
    assert len(report) >= 20


def test_entries_table_lists_lin_with_a_crop_that_exists(boards, demo, archived):
    pipeline, _ = demo
    found = boards.panel_rows("facebus-entries", "Entries")
    assert {r["person"]: r["category"] for r in found} == archived
    (lin,) = [r for r in found if r["person"] == "Lin_Manuel_Miranda"]
    assert (lin["category"] == "authorised" and lin["device"] == "hamilton"
            and 0 <= lin["distance"] <= MODEL_DEFAULTS["yunet-sface"].tolerance)
    assert lin["crop"] == lin["crop_path"]
    assert (pipeline.crops_dir / lin["crop_path"]).is_file()
    for row in found:
        assert (pipeline.crops_dir / row["crop_path"]).is_file(), row
    times = [datetime.fromisoformat(r["time"].replace("Z", "+00:00")) for r in found]  # RFC 3339 drops trailing 0s
    assert times == sorted(times, reverse=True), "newest first"


@pytest.fixture(scope="module")
def crops_server(demo):
    """The crops folder over HTTP at http://127.0.0.1:<port>/crops/ (as the nginx "crops" service serves it)."""
    pipeline, _ = demo
    quiet = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    handler = partial(quiet, directory=str(pipeline.state_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/crops"
    server.shutdown()
    server.server_close()


def test_crop_image_and_link_urls_return_the_jpeg(boards, crops_server):
    """The image cell's URL (regex value mapping, base rewritten by with_crops_url as `grafana push --crops-url`
    does) and the data link (${crops_url}/${__value.raw}, URI-encoded as Grafana does) both fetch the JPEG."""
    (lin,) = [r for r in boards.panel_rows("facebus-entries", "Entries") if r["person"] == "Lin_Manuel_Miranda"]
    assert emulation.crop_image_url(boards.by_uid["facebus-entries"], lin["crop"]) == [
        f"{grafana.DEFAULT_CROPS_URL}/{lin['crop_path']}"]
    dashboard = grafana.with_crops_url(boards.by_uid["facebus-entries"], crops_server)
    (image_url,) = emulation.crop_image_url(dashboard, lin["crop"])
    crops_var = next(v for v in dashboard["templating"]["list"] if v["name"] == "crops_url")["current"]["value"]
    panel = next(p for p in dashboard["panels"] if p["title"] == "Entries")
    links = [prop["value"][0]["url"] for o in panel["fieldConfig"]["overrides"] for prop in o["properties"]
             if prop["id"] == "links"]
    link_urls = {u.replace("${crops_url}", crops_var).replace("${__value.raw}", quote(lin["crop_path"], safe="/"))
                 for u in links}
    for url in {image_url, *link_urls}:
        response = requests.get(url, timeout=5)
        assert response.status_code == 200, url
        assert response.content[:3] == b"\xff\xd8\xff", f"{url} is not a JPEG"


def test_person_filter_returns_only_that_person(boards, archived, entry_counts):
    obama = boards.panel_rows("facebus-entries", "Entries", person=["Barack_Obama"])
    assert [r["person"] for r in obama] == (["Barack_Obama"] if "Barack_Obama" in archived else [])
    lin = boards.panel_rows("facebus-entries", "Entries", person=["Lin_Manuel_Miranda"])
    assert [r["person"] for r in lin] == ["Lin_Manuel_Miranda"]
    two = boards.panel_rows("facebus-entries", "Entries", person=["Barack_Obama", "Lin_Manuel_Miranda"])
    assert {r["person"] for r in two} == {"Barack_Obama", "Lin_Manuel_Miranda"} & set(archived)
    assert {r["person"] for r in boards.panel_rows("facebus-entries", "Entries", category=["unknown"])} == {"unknown"}
    assert boards.panel_rows("facebus-entries", "Entries", device=["no-such-camera"]) == []
    counts = {r["person"]: r["count"] for r in boards.panel_rows("facebus-entries", "Entries per person")}
    assert counts == entry_counts
    (total,) = boards.panel_rows("facebus-entries", "Entry count")
    assert total["count"] == sum(entry_counts.values())


# --- Visitors: recurring unknown faces (visitor ids are fields, grouped by the panel's transformations) --------------


VISITORS = ("facebus-entries", "Visitors")


def visitor_table(boards: Dashboards, **selected) -> list[dict]:
    """The Visitors panel's rows as its table shows them: its query run, then its transformations applied."""
    panel = boards.panel(*VISITORS)
    (target,) = panel["targets"]
    body = boards.run(target["query"], boards.variables(VISITORS[0], **selected))
    return [row for frame in emulation.transform(emulation.table_frames(body), panel["transformations"])
            for row in frame]


@pytest.fixture(scope="module")
def visitor_entries(demo):
    """Entries of recurring visitors (and others the panel must leave out), made from FaceEvents by the archiver's own
    entry_for/point_for and written to a database of their own on the demo's influxd (the demo's entries stay as the
    run left them). Yields (writer, the entries by event id)."""
    from archiver.core import entry_for, point_for
    from facebus.events import Visitor
    from tests.factories import face_event

    pipeline, end = demo
    writer = V1Writer(InfluxSettings(url=pipeline.influxd.url, database="visitors", api="v1"))
    first = end - timedelta(days=3)

    def stranger(event_id, device, minutes_ago, visitor_id=None, visits=1, person=None):
        visitor = Visitor(visitor_id=visitor_id, visits=visits, first_seen=first) if visitor_id else None
        return face_event(person, device, end - timedelta(minutes=minutes_ago), event_id=event_id, visitor=visitor)

    events = [
        stranger("a1", "door", 50, "v-aaaaaa", 1),
        stranger("a2", "gate", 30, "v-aaaaaa", 2),  # the same visitor at another camera
        stranger("a3", "door", 10, "v-aaaaaa", 3),
        stranger("b1", "door", 20, "v-bbbbbb", 5),
        stranger("u1", "door", 15),  # an unknown face not recognised as a visitor
        stranger("p1", "door", 12, person="Alice"),  # a named person
        stranger("c1", "door", 120, "v-cccccc", 9),  # before the time range
    ]
    entries = {e.event_id: entry_for(e) for e in events}
    writer.write([point_for(entry).to_line_protocol() for entry in entries.values()])
    yield writer, entries
    writer.close()


def test_visitors_panel_lists_each_visitor_with_visits_entries_cameras_and_latest_crop(visitor_entries, demo):
    writer, entries = visitor_entries
    boards = Dashboards(writer, demo[1])
    found = visitor_table(boards)
    assert [r["visitor_id"] for r in found] == ["v-aaaaaa", "v-bbbbbb"], "last seen first; no others"
    a, b = found
    assert (a["visits (max)"] == 3 and a["event_id (count)"] == 3
            and sorted(a["device (uniqueValues)"]) == ["door", "gate"])
    assert a["Time (max)"] == int(entries["a3"].time.timestamp() * 1000)
    assert a["crop (firstNotNull)"] == entries["a3"].crop_path, "the latest entry's crop"
    assert a["visitor_first_seen (firstNotNull)"] == entries["a1"].visitor_first_seen
    assert (b["visits (max)"], b["event_id (count)"], b["device (uniqueValues)"]) == (5, 1, ["door"])
    assert b["crop (firstNotNull)"] == entries["b1"].crop_path

    (gate,) = visitor_table(boards, device=["gate"])
    assert (gate["visitor_id"], gate["visits (max)"], gate["event_id (count)"]) == ("v-aaaaaa", 2, 1)
    assert visitor_table(boards, device=["no-such-camera"]) == []

    # every column the transformations make has its display override, and only those columns
    panel = boards.panel(*VISITORS)
    names = {o["matcher"]["options"] for o in panel["fieldConfig"]["overrides"] if o["matcher"]["id"] == "byName"}
    assert names == set(a), "an override names a column the table does not have, or a column has none"
    crop = a["crop (firstNotNull)"]
    assert emulation.crop_image_url(boards.by_uid[VISITORS[0]], crop, panel="Visitors") == [
        f"{grafana.DEFAULT_CROPS_URL}/{crop}"]
    moved = grafana.with_crops_url(boards.by_uid[VISITORS[0]], "https://cams.example/crops/")
    assert emulation.crop_image_url(moved, crop, panel="Visitors") == [f"https://cams.example/crops/{crop}"]
    (crop_column,) = [o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "crop (firstNotNull)"]
    assert {"id": "links", "value": [{"title": "Open the crop", "url": "${crops_url}/${__value.raw}",
                                      "targetBlank": True}]} in crop_column["properties"]


def test_visitors_panel_on_the_demo_run_shows_its_visitors(boards, demo):
    """On the demo's own data the panel shows exactly the visitors its entries carry (none when the recognizer gave
    no visitor ids), each with its entries counted."""
    pipeline, _ = demo
    body = boards.influx.query(emulation.substitute(
        'SELECT "visitor_id" FROM "face_entry" WHERE $timeFilter AND "visitor_id" =~ /./',
        {}, boards.start, boards.end, 1))
    expected: dict[str, int] = {}
    for row in rows(body):
        expected[row["visitor_id"]] = expected.get(row["visitor_id"], 0) + 1
    found = visitor_table(boards)
    assert {r["visitor_id"]: r["event_id (count)"] for r in found} == expected
    for row in found:
        assert re.fullmatch(r"v-[0-9a-f]{6,16}", row["visitor_id"]) and row["visits (max)"] >= 1
        assert (pipeline.crops_dir / row["crop (firstNotNull)"]).is_file()


def test_visits_dashboard(boards, archived, entry_counts):
    per_person: dict[str, int] = {}
    for row in boards.panel_rows("facebus-visits", "Visits per person"):
        per_person[row["person"]] = per_person.get(row["person"], 0) + row["count"]
    assert per_person == entry_counts
    assert (sum(r["count"] for r in boards.panel_rows("facebus-visits", "Visits per device"))
            == sum(entry_counts.values()))
    restricted = boards.panel_rows("facebus-visits", "Recent restricted entries")
    assert [r["person"] for r in restricted] == [p for p, c in archived.items() if c == "restricted"]
    unknown = boards.panel_rows("facebus-visits", "Unknown faces per device")
    assert (sum(r["count"] for r in unknown) == entry_counts["unknown"]
            and {r["device"] for r in unknown} == {"hamilton"})


def test_visits_device_panels(boards, demo):
    _, end = demo
    (last,) = boards.panel_rows("facebus-visits", "Last frames per device")
    assert last["device"] == "hamilton" and last["frames_in"] > 0
    assert end - timedelta(minutes=5) < datetime.fromisoformat(last["time"]) <= end
    (availability,) = boards.panel_rows("facebus-visits", "Device availability")
    assert availability["device"] == "hamilton"
    assert availability["online"] == 0, "the publisher went offline when the clip ended"
    fps = [r["mean"] for r in boards.panel_rows("facebus-visits", "Frames per second") if r["mean"] is not None]
    assert fps and 0 < max(fps) <= 5.5, "publisher --fps-max 5"


def test_health_panels_have_data(boards, entry_counts):
    frames_in = boards.panel_rows("facebus-health", "Frames in and dropped per device", "A")
    assert {r["device"] for r in frames_in} == {"hamilton"} and sum(r["sum"] for r in frames_in) > 20
    dropped = boards.panel_rows("facebus-health", "Frames in and dropped per device", "B")
    assert 0 <= sum(r["sum"] for r in dropped) < sum(r["sum"] for r in frames_in)
    p50 = [r["mean"] for r in boards.panel_rows("facebus-health", "Recognition latency", "A") if r["mean"] is not None]
    p99 = [r["max"] for r in boards.panel_rows("facebus-health", "Recognition latency", "B") if r["max"] is not None]
    assert p50 and p99 and 0 < min(p50) and max(p50) <= max(p99) < 60_000
    assert [r for r in boards.panel_rows("facebus-health", "Recognizer queue depth") if r["max"] is not None]
    (gallery,) = boards.panel_rows("facebus-health", "Gallery size")
    assert gallery["people"] == 22 and gallery["images"] >= 22
    assert (sum(r["sum"] for r in boards.panel_rows("facebus-health", "Archiver write rate"))
            >= sum(entry_counts.values()))
    for ref in "ABC":
        assert sum(r["sum"] for r in boards.panel_rows("facebus-health", "Errors", ref)) == 0
    events = sum(r["sum"] for r in boards.panel_rows("facebus-health", "Archiver events and backlog", "A"))
    throttled = sum(r["sum"] for r in boards.panel_rows("facebus-health", "Archiver events and backlog", "B"))
    ended = sum(r["sum"] for r in boards.panel_rows("facebus-health", "Archiver events and backlog", "D"))
    assert events > throttled > 0 and ended > 0
    assert events - throttled - ended == sum(entry_counts.values()), "events in - throttled - track summaries = entries"


def test_write_rate_counts_the_entries(boards, entry_counts):
    written = sum(r["sum"] for r in boards.panel_rows("facebus-health", "Archiver write rate"))
    assert written == sum(entry_counts.values())


def test_restricted_alert_query_fires_on_the_restricted_person_only(influx, demo, archived):
    """The alert's query over the 5 minutes before the run ended finds Alex_Lacamoire (→ firing) and nobody else;
    over an hour earlier it finds nothing (→ no data → OK)."""
    _, end = demo
    rule = yaml.safe_load(ALERT_FILE.read_text())["groups"][0]["rules"][0]
    (query,) = [d["model"]["query"] for d in rule["data"] if d["datasourceUid"] == "facebus-influxdb"]
    window = timedelta(seconds=rule["data"][0]["relativeTimeRange"]["from"])
    found = rows(influx.query(emulation.substitute(query, {}, end - window, end, 1)))
    expected = [(p, "hamilton") for p, c in archived.items() if c == "restricted"]  # [("Alex_Lacamoire", "hamilton")]
    assert [(r["person"], r["device"]) for r in found if r["count"] > 0] == expected
    hour = timedelta(hours=1)
    assert rows(influx.query(emulation.substitute(query, {}, end - 2 * hour, end - hour, 1))) == []


# --- facebus grafana push, against a stub of Grafana's HTTP API -----------------------------------------------------


@pytest.fixture
def grafana_stub():
    with serve_grafana_stub() as stub:
        yield stub


def facebus_grafana(argv: list[str]) -> int:
    """``facebus grafana ...`` through the command line's own parser and dispatch."""
    from facebus_tools import cli

    return cli.main(["grafana", *argv])


def test_push_creates_then_updates_the_datasource_and_saves_every_dashboard(grafana_stub, monkeypatch):
    url, recorded, _ = grafana_stub
    monkeypatch.setenv("INFLUX_URL", "http://influxdb:8086")
    monkeypatch.setenv("INFLUX_BUCKET", "facebus")
    monkeypatch.setenv("INFLUX_USER", "grafana")
    monkeypatch.setenv("INFLUX_PASSWORD", "influx-secret")
    assert facebus_grafana(["push", "--url", url, "--token", "glsa_test"]) == 0
    assert recorded and all(r["auth"] == "Bearer glsa_test" for r in recorded)

    (created,) = [r for r in recorded if (r["method"], r["path"]) == ("POST", "/api/datasources")]
    source = created["body"]
    assert source["uid"] == "facebus-influxdb" and source["type"] == "influxdb" and source["access"] == "proxy"
    assert source["url"] == "http://influxdb:8086" and source["user"] == "grafana"
    assert source["jsonData"]["version"] == "InfluxQL" and source["jsonData"]["dbName"] == "facebus"
    # InfluxQL's user/password (basic auth) only: a custom Authorization header would replace it, even empty.
    assert source["secureJsonData"] == {"password": "influx-secret"}
    assert not any(key.startswith("httpHeader") for key in source["jsonData"])
    assert "editable" not in source
    assert [r["body"] for r in recorded if (r["method"], r["path"]) == ("POST", "/api/folders")] == [
        {"title": "facebus", "uid": "facebus"}]

    saved = [r["body"] for r in recorded if (r["method"], r["path"]) == ("POST", "/api/dashboards/db")]
    assert len(saved) == len(DASHBOARD_FILES)
    assert {b["dashboard"]["uid"] for b in saved} == {load(p)["uid"] for p in DASHBOARD_FILES}
    assert all(b["overwrite"] is True and b["folderUid"] == "facebus" and "id" not in b["dashboard"] for b in saved)

    recorded.clear()
    crops = "https://cams.example/crops/"
    assert facebus_grafana(["push", "--url", url, "--token", "glsa_test", "--crops-url", crops]) == 0
    methods = [(r["method"], r["path"]) for r in recorded]
    assert ("PUT", "/api/datasources/uid/facebus-influxdb") in methods and ("POST", "/api/datasources") not in methods
    assert ("POST", "/api/folders") not in methods
    entries = next(r["body"]["dashboard"] for r in recorded
                   if r["path"] == "/api/dashboards/db" and r["body"]["dashboard"]["uid"] == "facebus-entries")
    assert emulation.crop_image_url(entries, "2026-11-22/door/x.jpg") == ["https://cams.example/crops/2026-11-22/door/x.jpg"]


def test_push_reuses_a_folder_titled_facebus(grafana_stub):
    """Alert rule provisioning creates its folder by title, with a generated uid: push saves the dashboards there."""
    url, recorded, state = grafana_stub
    state["folder"] = {"uid": "a1b2c3", "title": "facebus"}
    assert facebus_grafana(["push", "--url", url, "--token", "glsa_test"]) == 0
    assert ("POST", "/api/folders") not in [(r["method"], r["path"]) for r in recorded]
    saved = [r["body"] for r in recorded if r["path"] == "/api/dashboards/db"]
    assert saved and {b["folderUid"] for b in saved} == {"a1b2c3"}


def test_push_reports_failures_with_an_exit_code(grafana_stub, monkeypatch):
    from facebus_tools.devservers import free_port

    url, recorded, _ = grafana_stub
    monkeypatch.delenv("FACEBUS_GRAFANA_TOKEN", raising=False)
    assert facebus_grafana(["push", "--url", url]) == 2, "no token"
    assert recorded == []
    assert facebus_grafana(["push", "--url", f"http://127.0.0.1:{free_port()}", "--token", "t"]) == 1, "unreachable"


def test_push_reads_url_and_token_from_dot_env(grafana_stub, tmp_path):
    """FACEBUS_GRAFANA_URL and _TOKEN in the working directory's .env serve like every other setting (they were read
    from the environment before .env was loaded, and ignored). A process of its own: .env goes into its environment."""
    url, recorded, _ = grafana_stub
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEBUS_GRAFANA_")}
    (tmp_path / ".env").write_text(f"FACEBUS_GRAFANA_URL={url}\nFACEBUS_GRAFANA_TOKEN=glsa_from_env_file\n")
    done = subprocess.run([sys.executable, "-m", "facebus_tools", "grafana", "push"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert recorded and all(r["auth"] == "Bearer glsa_from_env_file" for r in recorded)
