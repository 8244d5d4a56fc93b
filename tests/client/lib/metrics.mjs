// Reading what operators read: the Prometheus text format of /metrics, the series the
// README documents (its "Metrics and logs" tables), the Grafana dashboard's queries and
// the alert rules' expressions, and the metric names a PromQL expression uses.
//
//   const scrape = parseMetrics(await (await fetch(`${url}/metrics`)).text());
//   value(scrape, "switchboard_sockets", { transport: "socket.io" })   // sum over matching samples
//   documentedSeries()            // [{name, type, labels}] from README.md
//   metricNames('sum(rate(x_total{a="b"}[5m]))')                      // ["x_total"]

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "./server.mjs";

export const README = join(REPO_ROOT, "README.md");
export const DASHBOARD = join(REPO_ROOT, "deploy", "grafana", "switchboard.json");
export const ALERTS = join(REPO_ROOT, "deploy", "prometheus", "alerts.yml");

const NAME = /[a-zA-Z_:][a-zA-Z0-9_:]*/y;

function sampleValue(text) {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  const n = Number(text);
  if (Number.isNaN(n)) throw new Error(`not a sample value: ${JSON.stringify(text)}`);
  return n;
}

/**
 * One sample line: `name{label="value",...} value [timestamp]`. Label values may hold
 * `}` and `,` (a route template does: `/api/v1/conversations/{id}`), so this scans
 * them rather than splitting.
 */
function parseSample(line) {
  NAME.lastIndex = 0;
  const m = NAME.exec(line);
  if (!m) throw new Error(`not a sample line: ${line}`);
  const name = m[0];
  let i = name.length;
  const labels = {};
  if (line[i] === "{") {
    i++;
    for (;;) {
      while (line[i] === " " || line[i] === ",") i++;
      if (line[i] === "}") {
        i++;
        break;
      }
      NAME.lastIndex = i;
      const key = NAME.exec(line);
      if (!key || line[i + key[0].length] !== "=" || line[i + key[0].length + 1] !== '"') {
        throw new Error(`bad label at ${i} in: ${line}`);
      }
      i += key[0].length + 2;
      let value = "";
      for (;;) {
        const c = line[i++];
        if (c === undefined) throw new Error(`unterminated label value in: ${line}`);
        if (c === '"') break;
        if (c === "\\") {
          const e = line[i++];
          value += e === "n" ? "\n" : e;
        } else value += c;
      }
      if (key[0] in labels) throw new Error(`label ${key[0]} twice in: ${line}`);
      labels[key[0]] = value;
    }
  }
  const rest = line.slice(i).trim().split(/\s+/);
  if (rest.length < 1 || rest.length > 2 || rest[0] === "") throw new Error(`bad sample value in: ${line}`);
  return { name, labels, value: sampleValue(rest[0]) };
}

/**
 * Parses the text exposition format (0.0.4). Returns `{types, help, samples}`: `types` and
 * `help` map a metric family's name to its `# TYPE` and `# HELP`, `samples` is every sample
 * line as `{name, labels, value}`. Throws on a line it cannot read, or a family typed twice.
 */
export function parseMetrics(text) {
  const types = new Map();
  const help = new Map();
  const samples = [];
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    if (line === "") continue;
    if (line.startsWith("#")) {
      const t = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (t) {
        if (types.has(t[1])) throw new Error(`# TYPE ${t[1]} appears twice`);
        types.set(t[1], t[2]);
      }
      const h = /^# HELP (\S+) (.*)$/.exec(line);
      if (h) help.set(h[1], h[2]);
      continue;
    }
    samples.push(parseSample(line));
  }
  return {
    types,
    help,
    samples,
    // What a failed `eventually` prints: the switchboard samples, buckets left out.
    toJSON: () =>
      samples
        .filter((s) => s.name.startsWith("switchboard_") && !s.name.endsWith("_bucket"))
        .map((s) => `${s.name}${JSON.stringify(s.labels)} ${s.value}`),
  };
}

/** Whether `have` holds every label of `want` with the same value. */
function matches(have, want) {
  return Object.entries(want).every(([k, v]) => have[k] === v);
}

/** The samples of `name` whose labels include all of `labels`. */
export function samplesOf(scrape, name, labels = {}) {
  return scrape.samples.filter((s) => s.name === name && matches(s.labels, labels));
}

/** Sum of the samples of `name` whose labels include all of `labels` (0 when there is none). */
export function value(scrape, name, labels = {}) {
  return samplesOf(scrape, name, labels).reduce((sum, s) => sum + s.value, 0);
}

/** The one sample of `name` with exactly `labels`, or undefined. */
export function exactly(scrape, name, labels) {
  const want = Object.keys(labels).length;
  return scrape.samples.find(
    (s) => s.name === name && Object.keys(s.labels).length === want && matches(s.labels, labels),
  );
}

const SUFFIXES = ["_bucket", "_sum", "_count"];

/**
 * The family a sample or a queried name belongs to: a histogram's `_bucket`, `_sum` and
 * `_count` series are the histogram's (when `types` says it is one), anything else itself.
 */
export function familyOf(name, types) {
  for (const suffix of SUFFIXES) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      if (types.get(base) === "histogram") return base;
    }
  }
  return name;
}

/** Fetches and parses `/metrics` of `server` (a lib/server.mjs ServerProcess). */
export async function scrapeOf(server) {
  const res = await server.http("GET", "/metrics");
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}: ${res.text.slice(0, 200)}`);
  return parseMetrics(res.text);
}

// ---- the README's tables -------------------------------------------------------

const TABLE_HEADER = "| series | type | labels | what it says |";

/**
 * Every row of the tables headed `| series | type | labels | what it says |` in README.md's
 * `## Metrics and logs` section: `{name, type, labels}`, `labels` being the backquoted label
 * names of the third column (none for `—`). Throws when the section or a table is missing
 * or a row does not read, so a malformed table fails loudly rather than checking nothing.
 */
export function documentedSeries(readme = readFileSync(README, "utf8")) {
  const start = readme.indexOf("\n## Metrics and logs\n");
  if (start < 0) throw new Error("README.md has no '## Metrics and logs' section");
  const next = readme.indexOf("\n## ", start + 1);
  const section = readme.slice(start, next < 0 ? undefined : next);
  const rows = [];
  let inTable = false;
  let tables = 0;
  for (const line of section.split("\n")) {
    if (line.trim() === TABLE_HEADER) {
      inTable = true;
      tables++;
      continue;
    }
    if (!inTable) continue;
    if (!line.startsWith("|")) {
      inTable = false;
      continue;
    }
    if (/^\|[-| ]+\|$/.test(line)) continue;
    const cells = line.split("|").slice(1, -1).map((c) => c.trim());
    if (cells.length !== 4) throw new Error(`README metrics row has ${cells.length} cells: ${line}`);
    const name = /^`([a-zA-Z_:][a-zA-Z0-9_:]*)`$/.exec(cells[0]);
    if (!name) throw new Error(`README metrics row does not name one series in backquotes: ${line}`);
    if (!["counter", "gauge", "histogram"].includes(cells[1])) {
      throw new Error(`README metrics row has type ${JSON.stringify(cells[1])}: ${line}`);
    }
    const labels = cells[2] === "—" ? [] : [...cells[2].matchAll(/`([a-zA-Z_][a-zA-Z0-9_]*)`/g)].map((m) => m[1]);
    if (cells[2] !== "—" && labels.length === 0) throw new Error(`README metrics row has unreadable labels: ${line}`);
    rows.push({ name: name[1], type: cells[1], labels });
  }
  if (tables === 0) throw new Error(`README's Metrics and logs section has no table headed ${TABLE_HEADER}`);
  return rows;
}

// ---- PromQL ------------------------------------------------------------------------

const KEYWORDS = new Set([
  "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
  "inf", "nan", "atan2",
]);

/**
 * The metric names a PromQL expression selects (Grafana's `$variables` allowed): what is
 * left once strings, label matchers, ranges, grouping clauses and variables are taken out,
 * minus functions (a name followed by `(`), keywords and numbers.
 */
export function metricNames(expr) {
  let e = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""');
  e = e.replace(/\{[^}]*\}/g, " ");
  e = e.replace(/\[[^\]]*\]/g, " ");
  e = e.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  e = e.replace(/\$\{[^}]*\}|\$\w+/g, " ");
  const names = new Set();
  for (const m of e.matchAll(/(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()/g)) {
    if (!KEYWORDS.has(m[1].toLowerCase())) names.add(m[1]);
  }
  return [...names];
}

// ---- the dashboard and the alert rules ---------------------------------------------

/** Every panel of a Grafana dashboard, rows and the panels of collapsed rows included. */
export function dashboardPanels(dashboard) {
  const out = [];
  const walk = (panels) => {
    for (const p of panels ?? []) {
      out.push(p);
      walk(p.panels);
    }
  };
  walk(dashboard.panels);
  return out;
}

/**
 * The alert rules of a Prometheus rules file, read just far enough for these tests (the
 * file's own layout: two-space indents, `expr` on one line or as a `|` block):
 * `[{alert, expr, for, labels: {…}, annotations: {…}}]`, plus the group names.
 */
export function alertRules(text) {
  const lines = text.split("\n");
  const groups = [];
  const rules = [];
  let rule = null;
  let section = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (/^\s*#/.test(line) || line.trim() === "") continue;
    const group = /^\s*- name:\s*(\S+)\s*$/.exec(line);
    if (group) {
      groups.push(group[1]);
      continue;
    }
    const start = /^(\s*)- alert:\s*(\S+)\s*$/.exec(line);
    if (start) {
      rule = { alert: start[2], indent: start[1].length + 2, labels: {}, annotations: {} };
      rules.push(rule);
      section = null;
      continue;
    }
    if (!rule) continue;
    const indent = line.length - line.trimStart().length;
    if (indent < rule.indent) {
      rule = null;
      continue;
    }
    const kv = /^(\s*)([a-z_]+):\s*(.*)$/.exec(line);
    if (!kv) continue;
    const [, , key, rest] = kv;
    // A block scalar (`|`, `>-`): the lines indented deeper than its key.
    let val = rest;
    if (/^[|>][-+]?$/.test(rest)) {
      const body = [];
      while (i + 1 < lines.length && (lines[i + 1].trim() === "" || lines[i + 1].length - lines[i + 1].trimStart().length > indent)) {
        body.push(lines[++i].trim());
      }
      val = body.join(rest.startsWith("|") ? "\n" : " ").trim();
    } else {
      val = val.replace(/^"(.*)"$/, "$1").replace(/^'(.*)'$/, "$1");
    }
    if (indent === rule.indent) {
      section = key === "labels" || key === "annotations" ? key : null;
      if (!section) rule[key] = val;
    } else if (section) {
      rule[section][key] = val;
    }
  }
  for (const r of rules) delete r.indent;
  return { groups, rules };
}
