#!/usr/bin/env python3
"""Checks deploy/prometheus/alerts.yaml and deploy/grafana/meeting-agent.json: valid YAML and
JSON of the expected shape, and every meeting_agent_* metric they query is one the agent
registers in its Rust source (src/, crates/).

    check_deploy_metrics.py REPO_ROOT

A metric is registered by a call of src/metrics.rs (`counter`, `gauge`, `float_gauge`,
`counter_vec`, `histogram`) or written by src/api/metrics.rs (`metric`, `latency_summary` and
the engine's frame counters); test modules do not count. Histograms also answer to
_bucket/_sum/_count, summaries to _sum/_count.
"""

import json
import os
import re
import sys

import yaml

CALL = re.compile(r"\b(counter|gauge|float_gauge|counter_vec|histogram)\(\s*\"(meeting_agent_\w+)\"")
LITERAL = re.compile(r"\"(meeting_agent_\w+)\"")
SUMMARY = re.compile(r"latency_summary\(\s*&mut \w+,\s*\"(meeting_agent_\w+)\"")
USED = re.compile(r"\bmeeting_agent_\w+")
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def without_tests(text):
    """The file up to its test module (by the project's convention, the last item)."""
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def registered(root):
    """{name: kind} of every metric the agent registers."""
    names = {}
    for top in ("src", "crates"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for name in files:
                if not name.endswith(".rs"):
                    continue
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8") as f:
                    text = without_tests(f.read())
                for kind, metric in CALL.findall(text):
                    names[metric] = kind
                if path.endswith(os.path.join("src", "api", "metrics.rs")):
                    # The exposition's own series: gauges/counters via metric() and the
                    # engine's (name, help, value) tuples, and the latency summaries.
                    for metric in LITERAL.findall(text):
                        names.setdefault(metric, "written")
                    for metric in SUMMARY.findall(text):
                        names[metric] = "summary"
    return names


def resolves(used, names):
    if used in names:
        return True
    for base, kind in names.items():
        for suffix in SUFFIXES.get(kind, ()):
            if used == base + suffix:
                return True
    return False


def alert_exprs(path, problems):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    exprs = []
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list) or not doc["groups"]:
        problems.append(f"{path}: no `groups:` list")
        return exprs
    seen_groups, seen_alerts = set(), set()
    for group in doc["groups"]:
        gname = group.get("name")
        if not gname or gname in seen_groups:
            problems.append(f"{path}: group without a name, or a repeated name: {gname!r}")
        seen_groups.add(gname)
        for rule in group.get("rules") or []:
            name = rule.get("alert") or rule.get("record")
            where = f"{path}: {gname}/{name}"
            if not name or not isinstance(rule.get("expr"), str) or not rule["expr"].strip():
                problems.append(f"{where}: a rule needs `alert` (or `record`) and `expr`")
                continue
            extra = set(rule) - {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
            if extra:
                problems.append(f"{where}: unknown keys {sorted(extra)}")
            if "for" in rule and not DURATION.match(str(rule["for"])):
                problems.append(f"{where}: `for: {rule['for']}` is no duration")
            if "alert" in rule:
                if name in seen_alerts:
                    problems.append(f"{where}: alert name repeated")
                seen_alerts.add(name)
                if not (rule.get("labels") or {}).get("severity"):
                    problems.append(f"{where}: no severity label")
                if not (rule.get("annotations") or {}).get("summary"):
                    problems.append(f"{where}: no summary annotation")
            if rule["expr"].count("(") != rule["expr"].count(")"):
                problems.append(f"{where}: unbalanced parentheses in expr")
            exprs.append((where, rule["expr"]))
    return exprs


def dashboard_exprs(path, problems):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    exprs = []
    if not doc.get("title") or not isinstance(doc.get("panels"), list) or not doc["panels"]:
        problems.append(f"{path}: a dashboard needs a title and panels")
        return exprs
    ids = set()
    for panel in doc["panels"]:
        where = f"{path}: panel {panel.get('title')!r}"
        if panel.get("id") in ids:
            problems.append(f"{where}: repeated id {panel.get('id')}")
        ids.add(panel.get("id"))
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{where}: no targets")
        for target in targets:
            expr = target.get("expr", "")
            if not expr.strip():
                problems.append(f"{where}: a target without expr")
            elif expr.count("(") != expr.count(")"):
                problems.append(f"{where}: unbalanced parentheses in expr")
            exprs.append((where, expr))
    for var in doc.get("templating", {}).get("list", []):
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        if var.get("type") == "query":
            exprs.append((f"{path}: variable {var.get('name')}", query or ""))
    return exprs


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    names = registered(root)
    if len(names) < 10:
        sys.exit(f"found only {len(names)} registered metrics under {root}/src: is the pattern stale?")
    problems = []
    exprs = alert_exprs(os.path.join(root, "deploy/prometheus/alerts.yaml"), problems)
    exprs += dashboard_exprs(os.path.join(root, "deploy/grafana/meeting-agent.json"), problems)
    used = set()
    for where, expr in exprs:
        for metric in USED.findall(expr):
            used.add(metric)
            if not resolves(metric, names):
                problems.append(f"{where}: `{metric}` is not a metric the agent registers")
    for problem in problems:
        print(f"check_deploy_metrics: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"check_deploy_metrics: {len(exprs)} queries use {len(used)} meeting_agent_* series, "
          f"all registered ({len(names)} metrics in the source)")


if __name__ == "__main__":
    main()
