"""The Grafana dashboards, the Prometheus configuration and their datasources, checked against
the code (no Docker engine, no Grafana here: statically).

Every query of every dashboard is parsed: InfluxQL with tests/deploy/influxql.py, then checked
against the measurements, tags and fields the archive really writes; PromQL with
promql-parser, then checked against the metric names and labels the API really serves. A
dashboard naming a field or metric that does not exist fails here, not on a Grafana screen.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.metrics import Snapshot
from config.settings import ApiSettings
from ingest import archive, contract, service_metrics
from storage.store import Store
from tests.deploy import influxql

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
GRAFANA = DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
VIN = "WVWZZZ1JZXW000001"
# What Grafana puts in place of its own variables before the query reaches the database.
BUILTINS = {"timeFilter": "time >= now() - 6h", "__interval": "1m", "__rate_interval": "1m",
            "__range": "6h", "__interval_ms": "60000", "col": "col"}
TARGET_LABELS = {"job", "instance"}  # Prometheus attaches these to every scraped series


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def datasources() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((GRAFANA / "provisioning" / "datasources").glob("*.yml")):
        for source in yaml.safe_load(path.read_text())["datasources"]:
            out[source["uid"]] = source
    return out


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(where, datasource uid, query) for every panel target, annotation and variable."""
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            uid = target.get("datasource", panel["datasource"])["uid"]
            yield f"panel {panel['title']!r}", uid, target.get("query") or target["expr"]
    for annotation in dashboard.get("annotations", {}).get("list", []):
        yield (f"annotation {annotation['name']!r}", annotation["datasource"]["uid"],
               annotation["target"]["query"])
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "query":
            yield f"variable ${variable['name']}", variable["datasource"]["uid"], variable["query"]


def interpolate(query: str, dashboard: dict[str, Any]) -> str:
    """The query as Grafana sends it; an undefined variable fails."""
    defined = {v["name"]: VIN for v in dashboard.get("templating", {}).get("list", [])}

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        assert name in defined, f"${name} is not a variable of {dashboard['uid']}"
        return defined[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, query)


# ---------------------------------------------------------------------------- what exists


def archive_schema() -> influxql.Schema:
    """Measurements, tags and field types of the points the archive writes, from one message
    of every kind through the contract and ``ingest.archive``, read back as line protocol."""
    ts = 1_767_571_200_000
    signals: dict[str, Any] = {}
    for path, spec in contract.SIGNALS.items():
        kind = spec.type
        signals[path] = (
            True if kind is contract.SignalType.BOOL
            else "Model Y" if kind is contract.SignalType.STRING
            else sorted(spec.allowed or ())[0] if kind is contract.SignalType.ENUM
            else [3.7, 3.71] if kind is contract.SignalType.FLOAT_LIST
            else [1, 2] if kind is contract.SignalType.INT_LIST
            else sorted(spec.allowed or {"x"})[:1] if kind is contract.SignalType.STRING_LIST
            else int(spec.min or 0) if kind is contract.SignalType.INT
            else float(spec.min or 0))
    messages = [
        (f"vehicles/{VIN}/telemetry", {"ts": ts, "seq": 1, "signals": signals}),
        *((f"vehicles/{VIN}/events", {"ts": ts, "seq": 2, "type": etype, "code": "P0562",
                                      "state": "active" if etype == "dtc" else "ON",
                                      "description": "x", "voltage_min": 9.5,
                                      "duration_ms": 800, "distance_m": 1200.0,
                                      "energy_kwh": 3.5})
          for etype in contract.EventType),
        ("chargers/CP-1/status", {"ts": ts, "connectorId": 1, "status": "Available",
                                  "errorCode": "NoError"}),
        ("chargers/CP-1/meter", {"ts": ts, "connectorId": 1, "transactionId": 7, "vin": VIN,
                                 "measurands": {name: m.min
                                                for name, m in contract.OCPP_MEASURANDS.items()}}),
    ]
    points = [point for topic, body in messages
              for point in archive.points_for_record(contract.validate(
                  topic, json.dumps(body).encode(), max_bytes=1 << 20))]  # the whole catalogue
    points.append(archive.point_for_alert({
        "asset_id": VIN, "type": "dtc", "severity": "warning", "status": "open",
        "title": "Trouble code", "id": "a1", "last_seen": ts}))
    schema: dict[str, tuple[set[str], dict[str, str]]] = {}
    for point in points:
        measurement, tags, fields = parse_line_protocol(point.to_line_protocol())
        known_tags, known_fields = schema.setdefault(measurement, (set(), {}))
        known_tags.update(tags)
        known_fields.update(fields)
    return {m: (frozenset(tags), fields) for m, (tags, fields) in schema.items()}


def parse_line_protocol(line: str) -> tuple[str, set[str], dict[str, str]]:
    """(measurement, tag keys, {field key: type}) of one line."""
    parts = re.findall(r'(?:[^ "\\]|\\.|"(?:[^"\\]|\\.)*")+', line)
    head = re.split(r"(?<!\\),", parts[0])
    unescape = lambda text: re.sub(r"\\(.)", r"\1", text)  # noqa: E731
    tags = {unescape(item.split("=", 1)[0]) for item in head[1:]}
    fields = {}
    for item in re.findall(r'(?:[^,"\\]|\\.|"(?:[^"\\]|\\.)*")+', parts[1]):
        key, value = re.split(r"(?<!\\)=", item, maxsplit=1)
        fields[unescape(key)] = ("string" if value.startswith('"') else
                                 "integer" if value.endswith("i") else
                                 "boolean" if value in ("true", "false", "t", "f") else "float")
    return unescape(head[0]), tags, fields


def exposed_metrics(tmp: Path) -> dict[str, set[str] | None]:
    """Every series name ``GET /metrics`` can serve, with its label names (None where the
    family has no sample to show them), rendered by the classes the endpoint uses."""
    store = Store(f"sqlite:///{tmp / 'metrics.sqlite'}")
    app = create_app(ApiSettings(state_dir=tmp, kafka_url="kafka://127.0.0.1:9"), store)
    try:
        app.state.http_metrics.observe("GET", "/alerts", 200, 0.02)
        now = time.time()
        reports = [service_metrics.Report(service, "host:1", int(now * 1000), [
            d.sample(1, *("x" for _ in d.labels)) for d in service_metrics.CATALOGUE
            if d.name.startswith(service + "_")]) for service in ("bridge", "worker")]
        registry = CollectorRegistry(auto_describe=False)
        registry.register(Snapshot(
            reports, {("ownercare.vehicles", 0): 3}, "ownercare", [("dtc", "warning", "open", 1)],
            now, extra=[*app.state.webhook_dispatcher.metrics(),
                        *app.state.http_metrics.collect()]))
        text = generate_latest(registry).decode()
    finally:
        store.close()
    names: dict[str, set[str] | None] = {}
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    for family in text_string_to_metric_families(text):
        for suffix in suffixes[family.type]:
            names[family.name + suffix] = None
        for sample in family.samples:
            names[sample.name] = (names[sample.name] or set()) | set(sample.labels)
    return names


@pytest.fixture(scope="module")
def schema() -> influxql.Schema:
    return archive_schema()


@pytest.fixture(scope="module")
def metrics(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str] | None]:
    return exposed_metrics(tmp_path_factory.mktemp("metrics"))


# ---------------------------------------------------------------------------- the checks


def check_influxql(query: str, schema: influxql.Schema) -> None:
    influxql.check(influxql.parse(query), schema)


def check_promql(query: str, metrics: dict[str, set[str] | None]) -> None:
    expr = promql_parser.parse(query)  # ValueError with the parser's message
    problems: list[str] = []

    def selectors(node: Any) -> list[Any]:
        found: list[Any] = []
        promql_parser.walk(node, lambda n: found.append(n) if isinstance(
            n, promql_parser.VectorSelector) else None)
        return found

    def labels_of(selector: Any) -> set[str] | None:
        known = metrics.get(selector.name)
        return None if known is None else known | TARGET_LABELS

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name not in metrics:
                problems.append(f"no metric {node.name!r} is served by GET /metrics")
                return
            known = labels_of(node)
            for matcher in node.matchers.matchers:
                if known is not None and matcher.name not in known:
                    problems.append(f"{node.name} has no label {matcher.name!r}")
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            inner = [labels_of(s) for s in selectors(node.expr)]
            if all(labels is not None for labels in inner):
                available = set().union(*inner)
                problems.extend(f"{label!r} is no label of {node.expr}"
                                for label in node.modifier.labels if label not in available)

    promql_parser.walk(expr, visit)
    if problems:
        raise ValueError("; ".join(problems))


def test_the_dashboards_are_provisioned_and_use_provisioned_datasources() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "ownercare.yml")
                              .read_text())["providers"][0]
    compose = yaml.safe_load((DEPLOY / "compose.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"]
                  if v.startswith("./"))
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    sources = datasources()
    assert {s["type"] for s in sources.values()} == {"influxdb", "prometheus"}
    assert {p.stem for p in DASHBOARDS} >= {"fleet", "vehicle", "services"}
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    for path in DASHBOARDS:
        dashboard = load(path)
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] in sources, (path.name, panel["title"])
            assert panel["datasource"]["type"] == sources[panel["datasource"]["uid"]]["type"]
            assert panel["targets"], (path.name, panel["title"])
        assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_the_influxdb_datasource_speaks_influxql_to_the_archives_bucket() -> None:
    """InfluxQL runs on InfluxDB 2.x (v1 API) and 3.x; Flux only on 2.x."""
    source = datasources()["ownercare-influxdb"]
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["jsonData"]["dbName"] == "${OWNERCARE_INFLUX_BUCKET}"
    assert source["jsonData"]["httpHeaderName1"] == "Authorization"
    assert source["secureJsonData"]["httpHeaderValue1"] == "Token ${OWNERCARE_INFLUX_TOKEN}"
    grafana_env = yaml.safe_load((DEPLOY / "compose.yml").read_text())[
        "services"]["grafana"]["environment"]
    assert {"OWNERCARE_INFLUX_BUCKET", "OWNERCARE_INFLUX_TOKEN"} <= grafana_env.keys()


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_query_parses_and_names_only_what_exists(
        path: Path, schema: influxql.Schema, metrics: dict[str, set[str] | None]) -> None:
    dashboard = load(path)
    kinds = {uid: s["type"] for uid, s in datasources().items()}
    checked = 0
    for where, uid, query in queries(dashboard):
        sent = interpolate(query, dashboard)
        try:
            if kinds[uid] == "influxdb":
                check_influxql(sent, schema)
            else:
                check_promql(sent, metrics)
        except ValueError as exc:
            pytest.fail(f"{path.name}, {where}: {exc}\n  query: {query}")
        checked += 1
    assert checked >= len(dashboard["panels"])


def test_the_charger_power_panel_averages_watts() -> None:
    """Power samples are averaged per window; summing them would grow with the sample rate."""
    panel = next(p for p in load(GRAFANA / "dashboards" / "fleet.json")["panels"]
                 if "Charger power" in p["title"])
    stmt = influxql.parse(panel["targets"][0]["query"].replace("$timeFilter", "time > 0"))
    assert isinstance(stmt, influxql.Select)
    assert stmt.group_time
    assert {expr[1] for expr, _ in stmt.fields} == {"mean"}
    assert panel["fieldConfig"]["defaults"]["unit"] == "watt"


@pytest.mark.parametrize(("query", "message"), [
    ('SELECT mean("Speedd") FROM "vehicle" WHERE time > 0', "no field or tag 'Speedd'"),
    ('SELECT mean("Speed") FROM "vehicles" WHERE time > 0', "no measurement 'vehicles'"),
    ('SELECT mean("status") FROM "charger"', "the field is string"),
    ('SELECT last("Speed") FROM "vehicle" GROUP BY "charger_id"', "no such tag"),
    ('SELECT count("x") FROM (SELECT last("Speed") AS "speed" FROM "vehicle" GROUP BY "vin")',
     "the subquery has no field or tag 'x'"),
    ('SELECT "vin" FROM "vehicle"', "names no field"),
    ('SELECT mean("Speed"), "Speed" FROM "vehicle"', "mixing"),
    ('SELECT integral("Speed") FROM "vehicle"', "integral() is not"),
    ('SELECT mean("Speed") FROM "vehicle" SLIMIT 1', "SLIMIT"),
    ('SHOW TAG VALUES FROM "vehicle" WITH KEY = "charger_id"', "no tag 'charger_id'"),
    ('from(bucket: "telemetry") |> range(start: -1h)', "unexpected character"),  # Flux
    ('SELECT mean("Speed") FROM "vehicle" WHERE', "expected"),
    ('SELECT mean("Speed") FROM "vehicle" GROUP BY time(1h) fill(sideways)', "fill option"),
])
def test_the_influxql_check_refuses_what_would_fail(query: str, message: str,
                                                    schema: influxql.Schema) -> None:
    with pytest.raises(influxql.InfluxQLError, match=re.escape(message)):
        check_influxql(query, schema)


@pytest.mark.parametrize(("query", "message"), [
    ("rate(ownercare_bridge_messages_totl[5m])", "no metric 'ownercare_bridge_messages_totl'"),
    ('ownercare_bridge_dead_letters_total{reasn="not_json"}', "no label 'reasn'"),
    ("sum by (route) (ownercare_bridge_dead_letters_total)", "'route' is no label"),
    ("ownercare_bridge_dead_letters_total{instance=~'.+'}", ""),  # target labels exist
    ("rate(ownercare_bridge_messages_total)", "expected type matrix"),
    ("sum(rate(http_requests_total[5m])", "unclosed"),
])
def test_the_promql_check_refuses_what_would_fail(
        query: str, message: str, metrics: dict[str, set[str] | None]) -> None:
    if not message:
        check_promql(query, metrics)
        return
    with pytest.raises(ValueError, match=re.escape(message)):
        check_promql(query, metrics)


def test_an_undefined_dashboard_variable_fails() -> None:
    with pytest.raises(AssertionError, match=r"\$plate is not a variable"):
        interpolate("SELECT x FROM y WHERE plate = '$plate'", {"uid": "d", "templating": {}})


def test_the_schema_is_the_archives() -> None:
    """The schema the queries are checked against, spot-checked against ingest.archive's
    documented layout."""
    schema = archive_schema()
    assert set(schema) == {"vehicle", "vehicle_event", "charger", "alert"}
    assert schema["vehicle"][0] == {"vin", "model"}
    assert schema["vehicle"][1]["LowVoltageBattery.CurrentVoltage"] == "float"
    assert "VehicleIdentification.Model" not in schema["vehicle"][1]
    assert schema["charger"][0] == {"charger_id", "connector"}
    assert schema["charger"][1]["status"] == "string"
    assert schema["charger"][1]["Power.Active.Import"] == "float"
    assert schema["alert"] == (frozenset({"asset_id", "type", "severity", "status"}),
                               {"title": "string", "id": "string"})


def test_prometheus_scrapes_every_api_replica_with_a_mounted_key() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    compose = yaml.safe_load((DEPLOY / "compose.yml").read_text())
    service = compose["services"]["prometheus"]
    mounts = dict(v.split(":")[:2] for v in service["volumes"] if v.startswith("./"))
    assert mounts["./prometheus/prometheus.yml"] in " ".join(service["command"])
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["credentials_file"] in mounts.values()
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["api"]
    assert sd["type"] == "A"
    assert "api" in compose["services"]
    env = dict(line.split("=", 1) for line in (DEPLOY / "example.env").read_text().splitlines()
               if line.strip() and not line.startswith("#"))
    assert sd["port"] == int(env["OWNERCARE_API_PORT"])
    assert "prometheus-data" in compose["volumes"]
    grafana_source = datasources()["ownercare-prometheus"]
    assert grafana_source["url"] == "http://prometheus:9090"
    # The scrape must finish although /metrics waits for Kafka's consumer-lag answer.
    from api.metrics import KAFKA_TIMEOUT_S
    timeout = config["global"]["scrape_timeout"]
    assert float(timeout.removesuffix("s")) > KAFKA_TIMEOUT_S
