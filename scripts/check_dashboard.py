#!/usr/bin/env python3
"""Check that a Grafana dashboard queries only metrics that headroom exports.

Usage: check_dashboard.py DASHBOARD_JSON METRICS_TEXT_FILE

DASHBOARD_JSON is a Grafana dashboard (the JSON model). METRICS_TEXT_FILE is a
Prometheus text exposition: a live scrape of headroom's /metrics, or a list of
`# TYPE name gauge` lines. Every metric name in every panel target's `expr`
(rows and nested panels included) and in every query variable's query must
appear in the exposition.

It also checks what makes the dashboard work for many containers (headroom
node, or many sidecars) in many clusters: the `cluster`, `namespace` and
`pod` variables (multi-select, with All, their values from
headroom_target_info, each list narrowed by the variables before it), every
headroom series of every panel and annotation filtered by all three, every
stat panel naming the pod its figure comes from, the "Containers at risk"
table (one row per namespace, pod and container, with the risk, the time to
OOM, the memory against the limit and the causes, most at risk first), and
the OOM-kill annotations (a rise of headroom_oom_kills_total, naming the
namespace, pod and container). Annotation queries are checked for unknown
metric names like the panels'.

Exits 0 when all is well, 1 when a metric is unknown, a check fails or the
dashboard has no query at all, 2 on unreadable input.

Standard library only, so any python3 runs it.
"""

from __future__ import annotations

import json
import re
import sys

# PromQL words that look like identifiers but are not metric names. The
# aggregation operators are here because `sum by (x) (...)` puts a keyword,
# not a parenthesis, after the operator's name.
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "bool", "offset", "inf", "nan",
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
    "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r'__name__\s*=\s*"((?:\\.|[^"\\])*)"')
_NAME_REGEX_MATCHER = re.compile(r"__name__\s*(=~|!=|!~)")
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$__\w+|\$\w+|\[\[[^\]]*\]\]")
_LABEL_LIST = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_TOKEN = re.compile(
    r"0[xX][0-9a-fA-F]+"
    r"|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[a-zA-Z]*"
    r"|[A-Za-z_:][A-Za-z0-9_:]*"
)


def metric_names(expr: str) -> tuple[set[str], list[str]]:
    """Metric names used in a PromQL expression, and warnings about it.

    Grafana variables are blanked first, then strings, label matchers, range
    selectors and label lists; what is left that looks like an identifier and
    is not a function call or a keyword is a metric name.
    """
    names: set[str] = set()
    warnings: list[str] = []
    expr = _GRAFANA_VAR.sub(" ", expr)
    # A matcher on __name__ names a metric too, inside braces we drop later.
    for braces in re.findall(r"\{(?:\"(?:\\.|[^\"\\])*\"|[^}\"])*\}", expr):
        for m in _NAME_MATCHER.finditer(braces):
            names.add(m.group(1))
        if _NAME_REGEX_MATCHER.search(braces):
            warnings.append(f"a regex or negative __name__ matcher is not checked: {braces}")
    expr = _STRING.sub(" ", expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = _LABEL_LIST.sub(r"\1", expr)
    for m in _TOKEN.finditer(expr):
        word = m.group(0)
        if not (word[0].isalpha() or word[0] in "_:"):
            continue  # a number or a duration
        if word.lower() in KEYWORDS:
            continue
        if re.match(r"\s*\(", expr[m.end():]):
            continue  # a function or an aggregation
        names.add(word)
    return names, warnings


def variable_exprs(query: str) -> list[str]:
    """The PromQL inside a Grafana Prometheus variable query, if any."""
    query = query.strip()
    m = re.fullmatch(r"label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)", query, re.S)
    if m:
        return [m.group(1)]
    if re.fullmatch(r"label_values\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\)", query):
        return []  # all values of a label: no metric
    m = re.fullmatch(r"query_result\((.*)\)", query, re.S)
    if m:
        return [m.group(1)]
    if query.startswith(("metrics(", "label_names(")):
        return []
    return [query] if query else []


def exported_names(text: str) -> set[str]:
    """Metric names in a Prometheus (or OpenMetrics) text exposition."""
    names: set[str] = set()
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                name, kind = parts[2], parts[3]
                names.add(name)
                if kind == "counter" and not name.endswith("_total"):
                    names.add(name + "_total")  # OpenMetrics names the family
                if kind in ("histogram", "summary", "gaugehistogram"):
                    names.update(name + s for s in ("_bucket", "_sum", "_count"))
            continue
        m = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line)
        if m:
            names.add(m.group(0))
    return names


def dashboard_queries(node, where: str = "") -> list[tuple[str, str]]:
    """(where, expr) for every panel target, nested panels included."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        title = node.get("title")
        here = where
        if title and "targets" in node:
            here = f"{where} / {title}" if where else f"panel {title!r}"
        for target in node.get("targets", []) or []:
            if isinstance(target, dict) and target.get("expr"):
                found.append((f"{here} [{target.get('refId', '?')}]", target["expr"]))
        for key, value in node.items():
            if key in ("panels", "rows"):
                found.extend(dashboard_queries(value, where))
    elif isinstance(node, list):
        for item in node:
            found.extend(dashboard_queries(item, where))
    return found


def annotation_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, expr) for every Prometheus annotation query."""
    found: list[tuple[str, str]] = []
    for ann in (dashboard.get("annotations") or {}).get("list", []) or []:
        expr = ann.get("expr") or (ann.get("target") or {}).get("expr")
        if expr:
            found.append((f"annotation {ann.get('name')!r}", expr))
    return found


def variable_queries(dashboard: dict) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for var in (dashboard.get("templating") or {}).get("list", []) or []:
        if var.get("type") != "query":
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        for expr in variable_exprs(query or ""):
            found.append((f"variable ${var.get('name')}", expr))
    return found


KEY_LABELS = ("namespace", "pod", "container")
# The variables every headroom series is filtered by, each list of values
# narrowed by the ones before it.
FILTER_VARIABLES = ("cluster", "namespace", "pod")
RISK_TABLE = "Containers at risk"
# What the table must show, by the metric its query reads.
RISK_TABLE_METRICS = {
    "headroom_oom_risk": "the risk",
    "headroom_time_to_oom_seconds": "the time to OOM",
    "headroom_memory_limit_bytes": "the limit",
    "headroom_memory_unreclaimable_bytes": "the memory against the limit",
    "headroom_diagnosis": "the causes",
}


def all_panels(panels) -> list[dict]:
    out: list[dict] = []
    for panel in panels or []:
        out.append(panel)
        out.extend(all_panels(panel.get("panels")))
    return out


def variable_problems(dashboard: dict) -> list[str]:
    problems: list[str] = []
    variables = {v.get("name"): v for v in (dashboard.get("templating") or {}).get("list", []) or []}
    for i, name in enumerate(FILTER_VARIABLES):
        var = variables.get(name)
        if var is None:
            problems.append(f"no ${name} template variable")
            continue
        if var.get("type") != "query" or var.get("multi") is not True or var.get("includeAll") is not True:
            problems.append(f"variable ${name}: should be a multi-select query variable with All")
        if var.get("allValue") != ".*":
            problems.append(f"variable ${name}: All should be .* (a container without a {name} label matches it), "
                            f"not {var.get('allValue')!r}")
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\s*\)", (query or "").strip(), re.S)
        if not m or m.group(2) != name or not m.group(1).strip().startswith("headroom_target_info"):
            problems.append(f"variable ${name}: values should be label_values(headroom_target_info..., {name}), "
                            f"not {query!r}")
            continue
        for before in FILTER_VARIABLES[:i]:
            if f'{before}=~"${before}"' not in m.group(1):
                problems.append(f"variable ${name}: should list the {name}s of the {before}s chosen "
                                f'({before}=~"${before}")')
    return problems


def filter_problems(dashboard: dict) -> list[str]:
    """Every headroom series a panel or an annotation reads is filtered by
    every variable."""
    problems: list[str] = []
    for where, expr in dashboard_queries(dashboard.get("panels", [])) + annotation_queries(dashboard):
        for m in re.finditer(r"\b(headroom_\w+)(\s*\{((?:\"(?:\\.|[^\"\\])*\"|[^}\"])*)\})?", expr):
            matchers = m.group(3) or ""
            for label in FILTER_VARIABLES:
                if not re.search(label + r'\s*=~\s*"\$\{?' + label + r'\}?"', matchers):
                    problems.append(f'{where}: {m.group(1)} is not filtered by {label}=~"${label}"')
    return problems


def stat_problems(dashboard: dict) -> list[str]:
    """A stat panel shows one figure of many containers: it says whose."""
    problems: list[str] = []
    for panel in all_panels(dashboard.get("panels")):
        if panel.get("type") != "stat":
            continue
        for target in panel.get("targets", []):
            if "{{pod}}" not in (target.get("legendFormat") or ""):
                problems.append(f"stat panel {panel.get('title')!r} [{target.get('refId')}]: its figure does not "
                                "say which pod (topk or bottomk, and {{pod}} in the legend)")
    return problems


def risk_table_problems(dashboard: dict) -> list[str]:
    problems: list[str] = []
    tables = [p for p in all_panels(dashboard.get("panels")) if p.get("title") == RISK_TABLE]
    if len(tables) != 1 or tables[0].get("type") != "table":
        return [f"no table panel titled {RISK_TABLE!r}"]
    table = tables[0]
    key = ", ".join(KEY_LABELS)
    shown: dict[str, str] = {}
    for target in table.get("targets", []):
        ref, expr = target.get("refId"), target.get("expr", "")
        if target.get("format") != "table" or target.get("instant") is not True:
            problems.append(f"{RISK_TABLE} [{ref}]: should be an instant query in table format")
        if not re.match(r"(max|min) by \(" + re.escape(key) + r"(, cause)?\) \(", expr):
            problems.append(f"{RISK_TABLE} [{ref}]: should aggregate by ({key}) first: one row per container")
        inner = re.match(r"(?:max|min) by \([^)]*\) \((?:clamp_max\()?(headroom_\w+)", expr)
        if inner:
            shown.setdefault(inner.group(1), ref)
    for metric, what in RISK_TABLE_METRICS.items():
        if metric not in shown:
            problems.append(f"{RISK_TABLE}: no column of {what} ({metric})")
    transformations = {t.get("id"): t.get("options") or {} for t in table.get("transformations", [])}
    fields = (transformations.get("groupBy") or {}).get("fields") or {}
    grouped = sorted(k for k, f in fields.items() if f.get("operation") == "groupby")
    if "merge" not in transformations or grouped != sorted(KEY_LABELS):
        problems.append(f"{RISK_TABLE}: should merge its queries and group the rows by {key}, not {grouped}")
    if (fields.get("cause") or {}).get("operation") != "aggregate":
        problems.append(f"{RISK_TABLE}: should list each container's causes in its one row")
    names = {}
    for override in (table.get("fieldConfig") or {}).get("overrides", []):
        for prop in override.get("properties", []):
            if prop.get("id") == "displayName":
                names[prop.get("value")] = (override.get("matcher") or {}).get("options", "")
    risk_ref = shown.get("headroom_oom_risk")
    if "Risk" not in names or not risk_ref or not re.search(names["Risk"], f"Value #{risk_ref}"):
        problems.append(f"{RISK_TABLE}: no column named Risk showing headroom_oom_risk")
    if ((table.get("options") or {}).get("sortBy") or [{}])[0] != {"displayName": "Risk", "desc": True}:
        problems.append(f"{RISK_TABLE}: should be sorted by Risk, the most at risk first")
    return problems


def oom_annotation_problems(dashboard: dict) -> list[str]:
    """An annotation marks every OOM kill on the time series, and names the
    container killed."""
    found = []
    for ann in (dashboard.get("annotations") or {}).get("list", []) or []:
        expr = ann.get("expr") or (ann.get("target") or {}).get("expr") or ""
        if "headroom_oom_kills_total" in expr:
            found.append((ann, expr))
    if not found:
        return ["no annotation query of headroom_oom_kills_total: OOM kills are not marked on the panels"]
    problems = []
    for ann, expr in found:
        name = ann.get("name")
        if not re.search(r"\b(increase|changes)\(headroom_oom_kills_total\b", expr) or not re.search(r">\s*0\s*$", expr):
            problems.append(f"annotation {name!r}: should mark a rise of the counter: "
                            "increase(headroom_oom_kills_total{...}[...]) > 0 (or changes)")
        if (ann.get("datasource") or {}).get("uid") != "${datasource}":
            problems.append(f"annotation {name!r}: datasource should be ${{datasource}}")
        if ann.get("enable") is not True:
            problems.append(f"annotation {name!r}: should be on (enable: true)")
        text = (ann.get("titleFormat") or "") + " " + (ann.get("textFormat") or "")
        for label in KEY_LABELS:
            if "{{" + label + "}}" not in text:
                problems.append(f"annotation {name!r}: its title or text should name the {label} ({{{{{label}}}}})")
            m = re.match(r"\s*\w+ by \(([^)]*)\)", expr)
            if m and label not in [x.strip() for x in m.group(1).split(",")]:
                problems.append(f"annotation {name!r}: aggregates {label} away")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8") as f:
            dashboard = json.load(f)
        with open(argv[2], encoding="utf-8") as f:
            exported = exported_names(f.read())
    except (OSError, ValueError) as e:
        print(f"check_dashboard: {e}", file=sys.stderr)
        return 2

    queries = (dashboard_queries(dashboard.get("panels", [])) + variable_queries(dashboard)
               + annotation_queries(dashboard))
    if not queries:
        print(f"check_dashboard: no queries found in {argv[1]}")
        return 1
    used: set[str] = set()
    missing = 0
    for where, expr in queries:
        names, warnings = metric_names(expr)
        for w in warnings:
            print(f"check_dashboard: warning: {where}: {w}")
        used |= names
        for name in sorted(names - exported):
            print(f"check_dashboard: {where}: {name} is not in {argv[2]} (expr: {expr})")
            missing += 1
    problems = (variable_problems(dashboard) + filter_problems(dashboard) + stat_problems(dashboard)
                + risk_table_problems(dashboard) + oom_annotation_problems(dashboard))
    for problem in problems:
        print(f"check_dashboard: {problem}")
    if missing:
        print(f"check_dashboard: {missing} unknown metric name(s)")
    if problems:
        print(f"check_dashboard: {len(problems)} problem(s) with the variables, filters, stat panels, "
              f"the {RISK_TABLE!r} table or the OOM-kill annotations")
    if missing or problems:
        return 1
    print(
        f"check_dashboard: {len(queries)} queries use {len(used)} metric names, "
        f"all exported: {', '.join(sorted(used))}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
