// The operators' files, read as Grafana and Prometheus read them (README, Metrics and
// logs): deploy/grafana/switchboard.json is an importable dashboard whose every panel
// shows something and which charts every documented series; deploy/prometheus/alerts.yml
// holds group `switchboard`, every rule with a `for`, a severity and its annotations, and
// a rule for each thing that pages. That every name they query is one a node exports is
// checked against a live scrape in metrics.test.mjs; promtool checks their syntax in
// `bash tests/run rust`.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import {
  ALERTS,
  DASHBOARD,
  alertRules,
  dashboardPanels,
  documentedSeries,
  metricNames,
} from "../lib/metrics.mjs";

const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8"));
const panels = dashboardPanels(dashboard);
const charts = panels.filter((p) => p.type !== "row");
const { groups, rules } = alertRules(readFileSync(ALERTS, "utf8"));

/** Every metric name the dashboard's queries select, with the titles of the panels that do. */
function dashboardNames() {
  const names = new Map();
  for (const p of charts) {
    for (const t of p.targets ?? []) {
      for (const n of metricNames(t.expr ?? "")) names.set(n, [...(names.get(n) ?? []), p.title]);
    }
  }
  return names;
}

describe("the Grafana dashboard", () => {
  it("is an importable dashboard: title, uid, schemaVersion, a Prometheus data source variable", () => {
    assert.equal(typeof dashboard.title, "string");
    assert.ok(dashboard.title.length > 0, "the dashboard has a title");
    assert.match(dashboard.uid ?? "", /^[\w-]{1,40}$/, "a stable uid, so a re-import replaces it");
    assert.ok(
      Number.isInteger(dashboard.schemaVersion) && dashboard.schemaVersion >= 36,
      `schemaVersion ${dashboard.schemaVersion}`,
    );
    assert.equal(dashboard.id ?? null, null, "no instance-specific id (import assigns one)");
    const vars = dashboard.templating?.list ?? [];
    const ds = vars.find((v) => v.name === "datasource");
    assert.ok(ds, `a datasource variable among ${vars.map((v) => v.name).join(", ")}`);
    assert.equal(ds.type, "datasource");
    assert.equal(ds.query, "prometheus");
    for (const v of vars.filter((v) => v.type === "query")) {
      assert.equal(v.datasource?.uid, "${datasource}", `variable ${v.name} queries the chosen data source`);
    }
  });

  it("has rows, and every other panel a title, a data source and at least one query", () => {
    const rows = panels.filter((p) => p.type === "row");
    assert.ok(rows.length >= 4, `${rows.length} rows: the panels are grouped in sections`);
    assert.ok(charts.length >= 20, `${charts.length} panels`);
    for (const r of rows) assert.ok(typeof r.title === "string" && r.title.length > 0, `a row without a title (id ${r.id})`);
    const ids = new Set();
    for (const p of panels) {
      assert.ok(!ids.has(p.id), `panel id ${p.id} appears twice`);
      ids.add(p.id);
      assert.ok(p.gridPos && p.gridPos.x + p.gridPos.w <= 24, `panel "${p.title}" fits the 24-column grid`);
    }
    for (const p of charts) {
      assert.ok(typeof p.title === "string" && p.title.trim().length > 0, `a ${p.type} panel without a title (id ${p.id})`);
      assert.ok(Array.isArray(p.targets) && p.targets.length >= 1, `panel "${p.title}" has no query`);
      assert.equal(p.datasource?.uid, "${datasource}", `panel "${p.title}" uses the chosen data source`);
      const refIds = new Set();
      for (const t of p.targets) {
        assert.ok(typeof t.expr === "string" && t.expr.trim().length > 0, `panel "${p.title}" has an empty query`);
        assert.ok(!refIds.has(t.refId), `panel "${p.title}" repeats refId ${t.refId}`);
        refIds.add(t.refId);
        assert.ok(metricNames(t.expr).length > 0, `panel "${p.title}": no metric in ${t.expr}`);
      }
    }
  });

  it("charts every series the README documents", () => {
    const queried = dashboardNames();
    const charted = (name, type) =>
      type === "histogram"
        ? ["_bucket", "_sum", "_count"].some((s) => queried.has(name + s))
        : queried.has(name);
    const missing = documentedSeries().filter((s) => !charted(s.name, s.type)).map((s) => s.name);
    assert.deepEqual(missing, [], "documented series no panel shows");
  });

  it("charts latency and batch sizes as quantiles of histogram buckets", () => {
    for (const p of charts) {
      for (const t of p.targets) {
        if (!/_bucket\b/.test(t.expr)) continue;
        assert.match(t.expr, /histogram_quantile\(/, `panel "${p.title}": buckets outside histogram_quantile`);
        assert.match(t.expr, /by \([^)]*\ble\b[^)]*\)/, `panel "${p.title}": buckets summed without keeping le`);
        assert.match(t.expr, /rate\(/, `panel "${p.title}": buckets not rated`);
      }
    }
    const titles = charts.map((p) => p.title.toLowerCase());
    for (const want of ["delivery latency", "command round trip", "persist batch size", "persist store time"]) {
      assert.ok(titles.some((t) => t.includes(want)), `a "${want}" panel among ${titles.join(", ")}`);
    }
  });
});

describe("the Prometheus alert rules", () => {
  it("are in group switchboard, each with for, a severity, a summary and a description", () => {
    assert.deepEqual(groups, ["switchboard"]);
    assert.ok(rules.length >= 7, `${rules.length} rules`);
    const names = new Set();
    for (const r of rules) {
      assert.ok(!names.has(r.alert), `alert ${r.alert} twice`);
      names.add(r.alert);
      assert.ok(r.expr && r.expr.length > 0, `${r.alert} has an expr`);
      assert.match(r.for ?? "", /^\d+[smh]$/, `${r.alert} has a for:`);
      assert.ok(["page", "ticket"].includes(r.labels.severity), `${r.alert} severity ${r.labels.severity}`);
      assert.ok((r.annotations.summary ?? "").length > 0, `${r.alert} has a summary`);
      assert.ok((r.annotations.description ?? "").length > 20, `${r.alert} has a description`);
    }
  });

  it("cover readiness, delivery latency, slow consumers, backlog, redeliveries, returned commands and 5xx", () => {
    const using = (pattern) => rules.filter((r) => pattern.test(r.expr));
    const expect = [
      [/\bup\{[^}]*switchboard/, "a Switchboard target down (up == 0)"],
      [/probe_success/, "readiness probe failing"],
      [/histogram_quantile\(0\.99,[\s\S]*switchboard_delivery_latency_seconds_bucket[\s\S]*>\s*0\.5/, "delivery p99 over 0.5 s"],
      [/switchboard_slow_consumers_disconnected_total/, "slow-consumer disconnects"],
      [/deriv\(switchboard_partition_backlog[\s\S]*switchboard_partition_backlog\)\s*>\s*\d+/, "backlog growing above a floor"],
      [/switchboard_partition_redelivered/, "redeliveries"],
      [/switchboard_commands_returned_total/, "commands returned"],
      [/status=~"5\.\."[\s\S]*\/[\s\S]*switchboard_http_requests_total/, "the HTTP 5xx ratio"],
    ];
    for (const [pattern, what] of expect) {
      assert.equal(using(pattern).length, 1, `one rule for ${what}, found ${using(pattern).map((r) => r.alert)}`);
    }
  });

  it("select only series a node exports, or Prometheus's own", () => {
    const documented = new Set(documentedSeries().map((s) => s.name));
    for (const r of rules) {
      for (const n of metricNames(r.expr)) {
        const base = n.replace(/_(bucket|sum|count)$/, "");
        assert.ok(
          documented.has(n) || documented.has(base) || n === "up" || n === "probe_success",
          `${r.alert} queries ${n}, which the README does not document`,
        );
      }
    }
  });
});
