#!/usr/bin/env python3
"""Checks of headroom's deployment files, run by scripts/check-deploy.sh.

Each subcommand checks one thing, prints what it found wrong, and exits 1 if
anything was (2 on bad usage). It runs in the venv built from
scripts/deploy-requirements.txt: PyYAML, helm-python-sdk (Helm v4 as a
library), kubernetes-validate (Kubernetes JSON schemas, offline) and the
cloudcoil prometheus-operator models (ServiceMonitor and PrometheusRule
types generated from the operator's CRDs).

  parse-yaml DIR...                 every *.yaml, *.yml and *.json parses
                                    (Helm templates excluded: not YAML yet)
  rules RULES METRICS TROUBLESHOOTING
                                    alert conventions, metric names, runbooks
  consistency                       chart appVersion = Cargo.toml version =
                                    image tags
  chart-files HELM_DIR              no symlink under HELM_DIR leaves its
                                    chart; the chart's copies of deploy/'s
                                    rules (and dashboard) are identical
  helm-lint CHART KUBE_VERSION [VALUES]
  helm-render CHART OUT [VALUES]    render to one multi-document file
  helm-parent CHART OUT             render a Go service's chart that depends
                                    on this one and includes the container
  k8s-validate VERSIONS FILE...     strict schema validation (VERSIONS is a
                                    comma-separated list); CRDs via the models
  sidecar FILE...                   the sidecar's security, probes, target
                                    env (HEADROOM_*, so `headroom check` in
                                    the container needs no flags) and native
                                    sidecar form (an init container with
                                    restartPolicy: Always)
  node CHART RENDERED VALUES [RENDERED VALUES]...
                                    the node mode's DaemonSet as rendered
                                    with those values (the chart's defaults
                                    under them): hostPID, read-only host
                                    mounts and the flags that name them,
                                    capabilities, probes, resources, and the
                                    Service, PodMonitor and rules beside it;
                                    plus renders of its other branches
  chart CHART RENDERED VALUES [RENDERED VALUES]...
                                    any mode: the objects it renders (rules
                                    and dashboard once per cluster only),
                                    their copies of deploy/'s files, every
                                    monitor's honorLabels, auth and the job
                                    the Prometheus Operator gives it, which
                                    HeadroomDown's job matcher must match;
                                    image, auth mounts, extra volumes,
                                    securityContext merge, NetworkPolicy;
                                    plus values that must fail to render
  dashboard JSON WORKDIR            Grafana dashboard structure, and the
                                    PromQL of every query (Grafana variables
                                    filled in) through promtool check rules
  dockerfile DOCKERFILE DOCKERIGNORE
                                    stages, runtime user, entrypoint, port,
                                    and COPY sources let in by .dockerignore
  docs METRICS MARKDOWN...          relative links and #anchors resolve; the
                                    metrics doc names every metric
  prom-config CONFIG WORKDIR        promtool check config, with Kubernetes
                                    service discovery checked here (Debian's
                                    promtool is built without it)
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

# From the product spec: the flags of `headroom run` (each also an env var
# HEADROOM_<FLAG_IN_UPPER_SNAKE>) and the values some of them take.
# headroom's flags (src/config.rs FLAGS, plus --config); tests/cli.rs checks
# that this set lists every one.
SPEC_FLAGS = {
    "config", "listen", "interval", "window", "pid", "process",
    "target-container", "cgroup",
    "cgroup-root", "proc-root", "go-url", "go-interval", "smaps-interval",
    "memory-limit", "limit-basis", "log-format", "log-level", "warn-within",
    "critical-within", "alertmanager-url", "webhook-url",
    "alertmanager-auth-file", "webhook-auth-file", "alert-ca-file", "profile-dir",
    "pprof-url", "alert-label", "runbook-base-url", "auth-file", "auth-metrics",
}
SPEC_FLAG_VALUES = {
    "limit-basis": {"unreclaimable", "working_set", "usage", "rss"},
    "log-format": {"text", "json"},
    "log-level": {"error", "warn", "info", "debug", "trace"},
    "auth-metrics": {"true", "false"},
}
SUBCOMMANDS = {"run", "check"}
# The flags of `headroom node` beyond those of `run` (src/config.rs
# NODE_FLAGS), and the flags of `run` about one target that it does not take
# (TARGET_ONLY).
NODE_FLAGS = {"cri-socket", "all-containers", "enter-netns", "max-targets"}
TARGET_ONLY_FLAGS = {"pid", "process", "target-container", "cgroup", "go-url", "memory-limit", "pprof-url"}
NODE_FLAG_VALUES = {
    "all-containers": {"true", "false"},
    "enter-netns": {"true", "false"},
}
REQUIRED_ALERTS = {
    "HeadroomOOMRiskWarning", "HeadroomOOMRiskCritical", "HeadroomLazyFreeCharged", "HeadroomGCThrash", "HeadroomTHPBloat",
    "HeadroomMisconfigured",
    "HeadroomTargetDown", "HeadroomOOMKilled", "HeadroomDown",
}
SEVERITIES = {"info", "warning", "critical"}
# Where the rules' runbook links point (and headroom's own default,
# --runbook-base-url): the docs of the source tree.
RUNBOOK_BASE = "https://github.com/headroom-dev/headroom/blob/main/docs/"
CRD_GROUPS = {"monitoring.coreos.com"}


class Problems:
    """Collects problems; the exit status is 1 if there is any."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)
        print(message)

    def exit(self, ok_message: str) -> int:
        if self.items:
            print(f"{len(self.items)} problem(s)")
            return 1
        print(ok_message)
        return 0


def load_docs(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# --- parse-yaml -------------------------------------------------------------


def cmd_parse_yaml(dirs: list[str]) -> int:
    p = Problems()
    count = 0
    for d in dirs:
        base = Path(d)
        explicit = base.is_file()
        files = [base] if explicit else sorted(base.rglob("*"))
        for path in files:
            if not path.is_file() or (not explicit and path.suffix not in (".yaml", ".yml", ".json")):
                continue
            if not explicit and "templates" in path.relative_to(base).parts:
                continue
            count += 1
            try:
                if path.suffix == ".json":
                    json.loads(path.read_text(encoding="utf-8"))
                else:
                    load_docs(path)
            except (yaml.YAMLError, ValueError) as e:
                p.add(f"{path}: {e}")
    if count == 0:
        p.add("no YAML or JSON file found")
    return p.exit(f"{count} files parse")


# --- rules ------------------------------------------------------------------


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def markdown_anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = github_slug(m.group(1).replace("`", ""))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def cmd_rules(rules_file: str, metrics_file: str, troubleshooting: str) -> int:
    from check_dashboard import exported_names, metric_names

    p = Problems()
    exported = exported_names(Path(metrics_file).read_text(encoding="utf-8")) | {"up"}
    anchors = markdown_anchors(Path(troubleshooting))
    doc_name = Path(troubleshooting).name
    seen: set[str] = set()
    (doc,) = load_docs(Path(rules_file))
    for group in doc["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            seen.add(name)
            names, _ = metric_names(rule["expr"])
            for metric in sorted(names - exported):
                p.add(f"{name}: {metric} is not a headroom metric ({metrics_file})")
            if "alert" not in rule:
                continue
            severity = (rule.get("labels") or {}).get("severity")
            if severity not in SEVERITIES:
                p.add(f"{name}: severity label {severity!r} is not one of {sorted(SEVERITIES)}")
            annotations = rule.get("annotations") or {}
            for key in ("summary", "description", "runbook_url"):
                if not annotations.get(key):
                    p.add(f"{name}: no {key} annotation")
            runbook = annotations.get("runbook_url", "")
            m = re.fullmatch(re.escape(RUNBOOK_BASE) + r"([\w.-]+)#(.+)", runbook)
            if not m or m.group(1) != doc_name:
                p.add(f"{name}: runbook_url {runbook!r} is not {RUNBOOK_BASE}{doc_name}#ANCHOR")
            elif m.group(2) not in anchors:
                p.add(f"{name}: runbook anchor #{m.group(2)} is not a heading of {troubleshooting}")
    for missing in sorted(REQUIRED_ALERTS - seen):
        p.add(f"alert {missing} is missing")
    return p.exit(f"{len(seen)} rules: metric names, labels, annotations and runbook anchors ok")


# --- docs -------------------------------------------------------------------


def cmd_docs(metrics_file: str, docs: list[str]) -> int:
    from check_dashboard import exported_names

    p = Problems()
    links = 0
    for doc in docs:
        path = Path(doc)
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"```.*?```", "", text, flags=re.S)  # links in code are not links
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # an absolute URL
            links += 1
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path.resolve()
            if not dest.exists():
                p.add(f"{doc}: link {target}: {file} does not exist")
            elif anchor and dest.suffix == ".md" and anchor not in markdown_anchors(dest):
                p.add(f"{doc}: link {target}: no heading #{anchor} in {dest.name}")
    metrics_doc = next((d for d in docs if Path(d).name == "metrics.md"), None)
    names = exported_names(Path(metrics_file).read_text(encoding="utf-8"))
    if metrics_doc:
        text = Path(metrics_doc).read_text(encoding="utf-8")
        for name in sorted(names):
            if not re.search(r"`" + re.escape(name) + r"(\{[^`]*\})?`", text):
                p.add(f"{metrics_doc}: metric {name} is not documented")
    else:
        p.add("no metrics.md among the docs")
    return p.exit(f"{links} relative links resolve; {len(names)} metrics documented")


# --- consistency ------------------------------------------------------------


def cmd_consistency() -> int:
    p = Problems()
    chart_dir = ROOT / "helm" / "headroom"
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text(encoding="utf-8"))
    values = yaml.safe_load((chart_dir / "values.yaml").read_text(encoding="utf-8"))
    cargo = (ROOT / "Cargo.toml").read_text(encoding="utf-8")
    m = re.search(r'^\[package\][^\[]*?^version\s*=\s*"([^"]+)"', cargo, re.M | re.S)
    crate_version = m.group(1) if m else None
    if str(chart.get("appVersion")) != crate_version:
        p.add(f"Chart.yaml appVersion {chart.get('appVersion')!r} != Cargo.toml version {crate_version!r}")
    app_version = str(chart.get("appVersion"))
    if values["image"].get("tag") not in ("", None):
        p.add(f"values.yaml image.tag is {values['image']['tag']!r}: leave it empty, the templates take "
              f"the chart's appVersion ({app_version}), so that it is written once")
    plain = ROOT / "deploy" / "kubernetes"
    for path in sorted(plain.glob("*.yaml")):
        for d in load_docs(path):
            spec = pod_spec(d) or {}
            for c in spec.get("containers", []):
                if c.get("name") == values["containerName"]:
                    image = c.get("image", "")
                    if not image.endswith(":" + app_version):
                        p.add(f"{path}: image {image} is not tag {app_version} (the chart's appVersion)")
    return p.exit(f"appVersion = crate version = plain manifests' image tag = {crate_version}; "
                  "values.yaml's image.tag left to appVersion")


# --- the chart's own files ------------------------------------------------------

# Files the chart ships as copies of deploy/'s (a chart loaded from git, as
# Argo CD does, or packaged, must hold them itself): (source, copy).
CHART_COPIES = [
    ("deploy/prometheus/headroom-rules.yaml", "helm/headroom/files/headroom-rules.yaml"),
    ("deploy/grafana/headroom-dashboard.json", "helm/headroom/files/headroom-dashboard.json"),
]


def cmd_chart_files(helm_dir: str) -> int:
    """No symlink under helm/ leaves its chart, and the chart's copies of
    deploy/'s files are identical to them."""
    p = Problems()
    base = (ROOT / helm_dir).resolve()
    links = 0
    for dirpath, dirnames, filenames in os.walk(base):
        here = Path(dirpath)
        for name in dirnames + filenames:
            path = here / name
            if not path.is_symlink():
                continue
            links += 1
            rel = path.relative_to(base)
            chart = base / rel.parts[0]
            target = path.resolve()
            if chart != target and chart not in target.parents:
                p.add(f"{helm_dir}/{rel} is a symlink to {os.readlink(path)}, outside the chart "
                      f"{helm_dir}/{rel.parts[0]}: Argo CD and `helm package` refuse it; commit a copy instead")
    stale = []
    for source, copy in CHART_COPIES:
        src, dst = ROOT / source, ROOT / copy
        if dst.is_symlink():
            p.add(f"{copy} is a symlink: the chart needs a copy of {source}")
            stale.append((source, copy))
        elif not dst.is_file():
            p.add(f"{copy} is missing: the chart needs a copy of {source}")
            stale.append((source, copy))
        elif dst.read_bytes() != src.read_bytes():
            p.add(f"{copy} differs from {source}")
            stale.append((source, copy))
    if stale:
        p.add("sync the chart's copies: " + " && ".join(f"cp {s} {c}" for s, c in stale))
    return p.exit(f"no symlink under {helm_dir}/ leaves its chart ({links} symlink(s)); "
                  f"{len(CHART_COPIES)} copied file(s) identical to deploy/'s")


# --- helm -------------------------------------------------------------------


def helm():
    import helm_python

    helm_python.disable_logging()
    return helm_python


def load_values(path: str | None) -> dict | None:
    if not path:
        return None
    return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}


def cmd_helm_lint(chart: str, kube_version: str, values_file: str | None = None) -> int:
    p = Problems()
    report = helm().lint(chart, load_values(values_file), strict=True, kube_version=kube_version)
    for msg in report.get("messages", []):
        level = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}.get(msg["severity"], "?")
        line = f"[{level}] {msg['path']}: {msg['error']}"
        if msg["severity"] >= 2:
            p.add(line)
        else:
            print(line)
    for err in report.get("errors", []):
        p.add(f"[ERROR] {err}")
    return p.exit(f"helm lint --strict ({kube_version}, {values_file or 'default values'}): clean")


# The namespace render() installs into: one without "headroom" in its name, so
# that a job of NAMESPACE/NAME matches HeadroomDown by the name alone.
RELEASE_NAMESPACE = "observability"


def render(chart_dir: str, values: dict | None, kube_version: str | None = None) -> str:
    """The chart rendered as one multi-document YAML text (NOTES.txt left
    out). kube_version (v1.28.0) is .Capabilities.KubeVersion, else Helm's
    default; helm-python-sdk 0.2.2 takes it as a render option that its
    Python wrapper does not expose, so that call goes to its native layer."""
    h = helm()
    with h.Chart.load(chart_dir) as chart:
        if kube_version is None:
            out = chart.render(values, name="demo", namespace=RELEASE_NAMESPACE, is_install=True)
        else:
            from helm_python import _native

            opts = {"name": "demo", "namespace": RELEASE_NAMESPACE, "is_install": True,
                    "kube_version": kube_version}
            out = json.loads(_native.call_string("helm_render", chart._raw(),
                                                 json.dumps(values) if values is not None else None,
                                                 json.dumps(opts)))
    docs = []
    for name in sorted(out):
        if name.endswith("NOTES.txt"):
            continue
        text = out[name].strip()
        if text:
            docs.append(f"# Source: {name}\n{text}\n")
    return "---\n".join(docs)


def cmd_helm_render(chart: str, out: str, values_file: str | None = None) -> int:
    p = Problems()
    text = render(chart, load_values(values_file))
    Path(out).write_text(text, encoding="utf-8")
    objects = [d for d in yaml.safe_load_all(text) if d]
    for d in objects:
        print(f"rendered {d.get('kind')}/{(d.get('metadata') or {}).get('name')}")
        check_honor_labels(d, p)
    return p.exit(f"{len(objects)} objects rendered to {out}")


def check_honor_labels(d: dict, p: Problems) -> None:
    """headroom's series name the watched container (namespace, pod,
    container): a scrape that does not honour them renames them
    exported_* and breaks every join with cAdvisor's series."""
    kind = d.get("kind")
    field = {"PodMonitor": "podMetricsEndpoints", "ServiceMonitor": "endpoints"}.get(kind)
    if not field:
        return
    for i, ep in enumerate((d.get("spec") or {}).get(field) or []):
        if ep.get("honorLabels") is not True:
            p.add(f"{kind}/{d['metadata']['name']}: {field}[{i}] lacks honorLabels: true")


PARENT_VALUES = {
    "headroom": {
        "target": {"process": "checkout", "containerName": "checkout"},
        "goUrl": "http://127.0.0.1:6060/debug/vars",
        "limitBasis": "working_set",
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "profiles": {"enabled": True},
        "imagePullSecrets": [{"name": "regcred"}],
        "auth": {"existingSecret": "checkout-headroom-auth"},
    }
}

PARENT_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-checkout
spec:
  selector:
    matchLabels:
      app: checkout
  template:
    metadata:
      labels:
        app: checkout
        {{- include "headroom.podLabels" . | nindent 8 }}
    spec:
      shareProcessNamespace: true
      {{- with include "headroom.imagePullSecrets" . }}
      imagePullSecrets:
        {{- . | nindent 8 }}
      {{- end }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
      containers:
        - name: checkout
          image: example/checkout:1.0.0
          env:
            - name: GODEBUG
              value: madvdontneed=1
        {{- include "headroom.container" . | nindent 8 }}
      {{- with include "headroom.volumes" . }}
      volumes:
        {{- . | nindent 8 }}
      {{- end }}
"""


def cmd_helm_parent(chart: str, out: str) -> int:
    """A Go service's chart with this chart under charts/ includes the sidecar."""
    p = Problems()
    with tempfile.TemporaryDirectory() as tmp:
        parent = Path(tmp) / "checkout"
        (parent / "templates").mkdir(parents=True)
        (parent / "charts").mkdir()
        shutil.copytree(chart, parent / "charts" / "headroom", symlinks=False)
        headroom_chart = yaml.safe_load((Path(chart) / "Chart.yaml").read_text(encoding="utf-8"))
        # The parent's own appVersion differs from headroom's: the sidecar's
        # image must take headroom's.
        (parent / "Chart.yaml").write_text(
            "apiVersion: v2\nname: checkout\nversion: 1.0.0\nappVersion: 7.7.7\n"
            f"dependencies:\n  - name: headroom\n    version: {headroom_chart['version']}\n", encoding="utf-8")
        (parent / "values.yaml").write_text(yaml.safe_dump(PARENT_VALUES), encoding="utf-8")
        (parent / "templates" / "deployment.yaml").write_text(PARENT_DEPLOYMENT, encoding="utf-8")
        text = render(str(parent), None)
    Path(out).write_text(text, encoding="utf-8")
    objects = [d for d in yaml.safe_load_all(text) if d]
    deployments = [d for d in objects if d.get("kind") == "Deployment"]
    if len(deployments) != 1:
        p.add(f"expected the parent's one Deployment, got {[d.get('kind') for d in objects]}")
        return p.exit("")
    containers = deployments[0]["spec"]["template"]["spec"]["containers"]
    sidecar = next((c for c in containers if c["name"] == "headroom"), None)
    if sidecar is None:
        p.add("no headroom container in the parent's Deployment")
        return p.exit("")
    env = {e["name"]: e for e in sidecar.get("env", [])}
    for name, value in (("HEADROOM_PROCESS", "checkout"), ("HEADROOM_LIMIT_BASIS", "working_set"),
                        ("HEADROOM_GO_URL", "http://127.0.0.1:6060/debug/vars")):
        if (env.get(name) or {}).get("value") != value:
            p.add(f"sidecar env lacks {name}={value} from the parent's values: {env.get(name)}")
    ref = ((env.get("HEADROOM_MEMORY_LIMIT") or {}).get("valueFrom") or {}).get("resourceFieldRef")
    if (ref or {}).get("containerName") != "checkout":
        p.add(f"HEADROOM_MEMORY_LIMIT is not the checkout container's limits.memory: {ref}")
    if sidecar.get("securityContext", {}).get("runAsUser") != 10001:
        p.add("the parent's headroom.runAsUser did not reach the sidecar")
    pod = deployments[0]["spec"]["template"]
    volumes = {vol["name"]: vol for vol in pod["spec"].get("volumes") or []}
    if "headroom-profiles" not in volumes:
        p.add("headroom.volumes rendered no profiles volume with profiles on")
    if (volumes.get("headroom-auth") or {}).get("secret", {}).get("secretName") != "checkout-headroom-auth":
        p.add(f"headroom.volumes rendered no volume of the auth Secret: {sorted(volumes)}")
    want_image = expected_image({"repository": "headroom"}, str(headroom_chart["appVersion"]))
    if sidecar.get("image") != want_image:
        p.add(f"sidecar image {sidecar.get('image')}: expected {want_image}, headroom's appVersion "
              "(not the parent chart's)")
    if pod["metadata"]["labels"].get("headroom.dev/sidecar") != "true":
        p.add("headroom.podLabels did not label the pod headroom.dev/sidecar: \"true\"")
    if pod["spec"].get("imagePullSecrets") != [{"name": "regcred"}]:
        p.add(f"headroom.imagePullSecrets rendered {pod['spec'].get('imagePullSecrets')}")
    return p.exit("a dependent chart's include of headroom.container takes its headroom: values")


# --- kubernetes validation ----------------------------------------------------


def crd_model(doc: dict):
    from cloudcoil.models.prometheus_operator import v1

    models = {"ServiceMonitor": v1.ServiceMonitor, "PrometheusRule": v1.PrometheusRule,
              "PodMonitor": v1.PodMonitor}
    return models.get(doc.get("kind"))


def unknown_keys(given, dumped, path: str = "") -> list[str]:
    """Keys of `given` that a model dropped: fields the schema does not have."""
    found: list[str] = []
    if isinstance(given, dict):
        if not isinstance(dumped, dict):
            return [path or "."]
        for k, v in given.items():
            if k not in dumped:
                found.append(f"{path}.{k}")
            else:
                found.extend(unknown_keys(v, dumped[k], f"{path}.{k}"))
    elif isinstance(given, list) and isinstance(dumped, list):
        for i, (a, b) in enumerate(zip(given, dumped)):
            found.extend(unknown_keys(a, b, f"{path}[{i}]"))
    return found


def validate_crd(doc: dict) -> list[str]:
    model = crd_model(doc)
    if model is None:
        return [f"no schema for {doc.get('apiVersion')} {doc.get('kind')}"]
    try:
        obj = model.model_validate(doc)
    except Exception as e:  # pydantic.ValidationError, kept generic
        return [str(e)]
    dumped = obj.model_dump(by_alias=True, exclude_none=True, mode="json")
    return [f"unknown field {k}" for k in unknown_keys(doc, dumped)]


def cmd_k8s_validate(versions: str, files: list[str]) -> int:
    import kubernetes_validate.utils as kv

    p = Problems()
    count = 0
    for file in files:
        for doc in load_docs(Path(file)):
            count += 1
            kind, api = doc.get("kind"), doc.get("apiVersion", "")
            ident = f"{file}: {kind}/{(doc.get('metadata') or {}).get('name')}"
            if not kind or not api or not (doc.get("metadata") or {}).get("name"):
                p.add(f"{ident}: apiVersion, kind and metadata.name are required")
                continue
            if api.split("/")[0] in CRD_GROUPS:
                for problem in validate_crd(doc):
                    p.add(f"{ident} ({api}, prometheus-operator CRD model): {problem}")
                continue
            for version in versions.split(","):
                try:
                    kv.validate(doc, version, strict=True)
                except kv.ValidationError as e:
                    where = ".".join(str(x) for x in e.path)
                    p.add(f"{ident} (Kubernetes {version}, strict): {where}: {e.message}")
                except kv.SchemaNotFoundError as e:
                    p.add(f"{ident}: {e.message}")
    return p.exit(f"{count} objects valid (Kubernetes {versions.replace(',', ', ')}, strict)")


# --- sidecar conventions -----------------------------------------------------


def pod_spec(doc: dict) -> dict | None:
    kind = doc.get("kind")
    if kind == "Pod":
        return doc.get("spec")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return doc["spec"]["template"]["spec"]
    return None


def check_args(ident: str, args: list, p: Problems) -> None:
    args = [str(a) for a in args]
    if args and not args[0].startswith("-") and args[0] not in SUBCOMMANDS:
        p.add(f"{ident}: subcommand {args[0]!r} is not one of {sorted(SUBCOMMANDS)}")
    for i, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        flag, _, inline = arg[2:].partition("=")
        if flag not in SPEC_FLAGS:
            p.add(f"{ident}: --{flag} is not a headroom flag")
            continue
        value = inline or (args[i + 1] if i + 1 < len(args) else "")
        allowed = SPEC_FLAG_VALUES.get(flag)
        if allowed and value not in allowed:
            p.add(f"{ident}: --{flag} {value!r} is not one of {sorted(allowed)}")


def is_sidecar(c: dict) -> bool:
    return c["name"] == "headroom" or "headroom" in c.get("image", "")


def check_target_env(cid: str, c: dict, spec: dict, env: dict, p: Problems) -> None:
    """The target is given as HEADROOM_* env, so `headroom check` in the
    container watches it with no flags; a limit from the downward API names
    a container of the pod."""
    args = [str(a) for a in c.get("args", []) + c.get("command", [])[1:]]
    for flag in ("--process", "--pid", "--go-url", "--limit-basis", "--memory-limit"):
        if flag in args or any(a.startswith(flag + "=") for a in args):
            p.add(f"{cid}: {flag} is a flag; give it as env HEADROOM_"
                  f"{flag[2:].upper().replace('-', '_')} so that `headroom check` needs none")
    if "HEADROOM_PROCESS" not in env and "HEADROOM_PID" not in env:
        p.add(f"{cid}: env HEADROOM_PROCESS (or HEADROOM_PID) is missing")
    names = {x["name"] for x in spec.get("containers", []) + spec.get("initContainers", [])}
    for e in env.values():
        ref = (e.get("valueFrom") or {}).get("resourceFieldRef")
        if ref is None:
            continue
        if ref.get("containerName") not in names:
            p.add(f"{cid}: env {e['name']} takes {ref.get('resource')} of container "
                  f"{ref.get('containerName')!r}, which is not in the pod ({sorted(names)})")
        if e["name"] == "HEADROOM_MEMORY_LIMIT" and ref.get("resource") != "limits.memory":
            p.add(f"{cid}: HEADROOM_MEMORY_LIMIT must be limits.memory, not {ref.get('resource')}")


def cmd_sidecar(files: list[str]) -> int:
    """Every pod with a headroom container is set up the way headroom needs."""
    p = Problems()
    pods = 0
    for file in files:
        for doc in load_docs(Path(file)):
            spec = pod_spec(doc)
            if spec is None:
                continue
            sidecars = [c for c in spec.get("containers", []) if is_sidecar(c)]
            native = [c for c in spec.get("initContainers", []) if is_sidecar(c)]
            if not sidecars and not native:
                continue
            pods += 1
            ident = f"{file}: {doc['kind']}/{doc['metadata']['name']}"
            if spec.get("shareProcessNamespace") is not True:
                p.add(f"{ident}: shareProcessNamespace must be true")
            labels = ((doc.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
            if doc["kind"] != "Pod" and labels.get("headroom.dev/sidecar") != "true":
                p.add(f'{ident}: the pod lacks the label headroom.dev/sidecar: "true" ("headroom.podLabels"), '
                      "by which the PodMonitor of the chart's mode cluster finds every sidecar")
            for c in native:
                if c.get("restartPolicy") != "Always":
                    p.add(f"{ident} init container {c['name']}: a headroom init container "
                          "needs restartPolicy: Always (a native sidecar), or the pod never starts")
            for c in sidecars:
                if "restartPolicy" in c:
                    p.add(f"{ident} container {c['name']}: restartPolicy belongs to init containers only")
            for c in sidecars + native:
                cid = f"{ident} container {c['name']}"
                check_args(cid, c.get("args", []) + c.get("command", [])[1:], p)
                env = {e["name"]: e for e in c.get("env", [])}
                check_target_env(cid, c, spec, env, p)
                for name in ("POD_NAME", "POD_NAMESPACE"):
                    field = ((env.get(name) or {}).get("valueFrom") or {}).get("fieldRef", {})
                    want = "metadata." + name[4:].lower()
                    if field.get("fieldPath") != want:
                        p.add(f"{cid}: env {name} must come from the downward API ({want})")
                if "CONTAINER_NAME" not in env:
                    p.add(f"{cid}: env CONTAINER_NAME is missing")
                for name in env:
                    if name.startswith("HEADROOM_"):
                        flag = name[len("HEADROOM_"):].lower().replace("_", "-")
                        if flag not in SPEC_FLAGS:
                            p.add(f"{cid}: env {name} is not a headroom flag")
                ports = {pt.get("name"): pt.get("containerPort") for pt in c.get("ports", [])}
                if "metrics" not in ports:
                    p.add(f"{cid}: no port named metrics")
                for probe, path, required in (("livenessProbe", "/healthz", True),
                                              ("readinessProbe", "/readyz", False)):
                    if not c.get(probe) and not required:
                        continue  # optional: a pod is Ready only when all its containers are
                    got = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
                    if got != path:
                        p.add(f"{cid}: {probe} should GET {path}, not {got}")
                    port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
                    if port not in ("metrics", ports.get("metrics")):
                        p.add(f"{cid}: {probe} port {port} is not the metrics port")
                sc = c.get("securityContext") or {}
                psc = spec.get("securityContext") or {}
                if sc.get("readOnlyRootFilesystem") is not True:
                    p.add(f"{cid}: readOnlyRootFilesystem must be true")
                if sc.get("allowPrivilegeEscalation") is not False:
                    p.add(f"{cid}: allowPrivilegeEscalation must be false")
                if sc.get("privileged"):
                    p.add(f"{cid}: must not be privileged")
                caps = sc.get("capabilities") or {}
                if "ALL" not in (caps.get("drop") or []):
                    p.add(f"{cid}: capabilities must drop ALL")
                extra = set(caps.get("add") or []) - {"SYS_PTRACE"}
                if extra:
                    p.add(f"{cid}: capabilities {sorted(extra)} are more than headroom needs")
                root = sc.get("runAsUser", psc.get("runAsUser")) == 0
                if "SYS_PTRACE" in (caps.get("add") or []) and not root:
                    p.add(f"{cid}: SYS_PTRACE takes effect only for root (no ambient capabilities)")
                if not root and sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
                    p.add(f"{cid}: runAsNonRoot must be true")
                res = c.get("resources") or {}
                if not (res.get("requests") or {}).get("memory") or not (res.get("limits") or {}).get("memory"):
                    p.add(f"{cid}: memory request and limit are required")
    if pods == 0:
        p.add(f"no pod with a headroom container in {files}")
    return p.exit(f"{pods} pod(s) with the sidecar set up as headroom needs")


# --- node mode ----------------------------------------------------------------

# BENCHMARKS.md, "Node mode: 100 Go containers": headroom node's memory with
# no container, and the most one watched container adds at a full history.
NODE_BASE_BYTES = 6 * 2**20
NODE_TARGET_BYTES = 265 * 2**10


def deep_merge(base: dict, over: dict) -> dict:
    """Values as Helm merges them: maps merge, anything else replaces, null
    removes the key."""
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def switch_on(v: dict, section: str) -> bool:
    """A switch of the chart that may be left null: on in mode cluster."""
    value = (v.get(section) or {}).get("enabled")
    return value if isinstance(value, bool) else v.get("mode") == "cluster"


def chart_app_version(chart: str) -> str:
    return str(yaml.safe_load((Path(chart) / "Chart.yaml").read_text(encoding="utf-8"))["appVersion"])


def expected_image(image: dict, app_version: str) -> str:
    """The image reference the values give: [registry/]repository@digest,
    else [registry/]repository:tag, the tag defaulting to appVersion."""
    repo = image["repository"]
    if image.get("registry"):
        repo = image["registry"].rstrip("/") + "/" + repo
    if image.get("digest"):
        return f"{repo}@{image['digest']}"
    return f"{repo}:{image.get('tag') or app_version}"


def quantity_bytes(q) -> float:
    m = re.fullmatch(r"([0-9.]+)(Ki|Mi|Gi|k|M|G)?", str(q))
    if not m:
        raise ValueError(f"not a memory quantity: {q!r}")
    scale = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    return float(m.group(1)) * scale[m.group(2)]


def flag_values(args: list[str]) -> dict[str, str]:
    """--flag VALUE and --flag=VALUE pairs of an argument list."""
    out: dict[str, str] = {}
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            flag, eq, inline = arg[2:].partition("=")
            out[flag] = inline if eq else (args[i + 1] if i + 1 < len(args) else "")
    return out


def check_node_render(ident: str, objects: list[dict], v: dict, p: Problems, app_version: str) -> None:
    n = v["node"]
    by_kind: dict[str, list[dict]] = {}
    for d in objects:
        by_kind.setdefault(d.get("kind"), []).append(d)
    for kind in ("Deployment", "StatefulSet", "Pod"):
        if kind in by_kind:
            p.add(f"{ident}: node mode renders a {kind}: only the DaemonSet runs headroom")
    daemonsets = by_kind.get("DaemonSet", [])
    if len(daemonsets) != 1:
        p.add(f"{ident}: expected one DaemonSet, got {len(daemonsets)}")
        return
    ds = daemonsets[0]
    did = f"{ident}: DaemonSet/{ds['metadata']['name']}"
    tmpl = ds["spec"]["template"]
    spec = tmpl["spec"]
    pod_labels = tmpl["metadata"].get("labels") or {}
    if not set(ds["spec"]["selector"]["matchLabels"].items()) <= set(pod_labels.items()):
        p.add(f"{did}: the selector does not match the pod template's labels")

    # The pod: the host's PID namespace, nothing else of the host's.
    if spec.get("hostPID") is not True:
        p.add(f"{did}: hostPID must be true (cgroup.procs lists the host's PIDs)")
    for field in ("hostNetwork", "hostIPC"):
        if spec.get(field):
            p.add(f"{did}: {field} is more than headroom node needs")
    if spec.get("automountServiceAccountToken") is not False:
        p.add(f"{did}: automountServiceAccountToken must be false (no API server access is needed)")
    if (spec.get("priorityClassName") or "") != (n.get("priorityClassName") or ""):
        p.add(f"{did}: priorityClassName {spec.get('priorityClassName')!r} is not node.priorityClassName")
    if (spec.get("tolerations") or []) != (n.get("tolerations") or []):
        p.add(f"{did}: tolerations {spec.get('tolerations')} are not node.tolerations")
    if {"operator": "Exists"} in (n.get("tolerations") or []) and {"operator": "Exists"} not in spec.get("tolerations", []):
        p.add(f"{did}: the toleration of every taint is missing")
    if (spec.get("nodeSelector") or {}) != (n.get("nodeSelector") or {}):
        p.add(f"{did}: nodeSelector {spec.get('nodeSelector')} is not node.nodeSelector")

    containers = spec.get("containers", [])
    if len(containers) != 1 or spec.get("initContainers"):
        p.add(f"{did}: expected headroom's container alone, got {[c['name'] for c in containers]}")
        return
    c = containers[0]
    cid = f"{did} container {c['name']}"
    if c["name"] != v["containerName"]:
        p.add(f"{cid}: not named containerName ({v['containerName']})")
    if c.get("image") != expected_image(v["image"], app_version):
        p.add(f"{cid}: image {c.get('image')} is not {expected_image(v['image'], app_version)}, "
              "what the image values give")
    args = [str(a) for a in c.get("args", [])]
    if not args or args[0] != "node":
        p.add(f"{cid}: args must start with the subcommand node: {args[:1]}")
    flags = flag_values(args)
    for flag, value in flags.items():
        if flag in TARGET_ONLY_FLAGS or flag not in (SPEC_FLAGS | NODE_FLAGS) - {"config"}:
            p.add(f"{cid}: --{flag} is not a flag of headroom node")
        allowed = NODE_FLAG_VALUES.get(flag) or SPEC_FLAG_VALUES.get(flag)
        if allowed and value not in allowed:
            p.add(f"{cid}: --{flag} {value!r} is not one of {sorted(allowed)}")
    want = {
        "enter-netns": str(n["enterNetns"]).lower(),
        "all-containers": str(n["allContainers"]).lower(),
        "max-targets": str(n["maxTargets"]),
        "interval": str(n["interval"]),
        "listen": f"0.0.0.0:{v['port']}",
        "limit-basis": v["limitBasis"],
        "log-format": v["logFormat"],
    }
    if v["auth"]["existingSecret"]:
        want["auth-file"] = f"/etc/headroom/auth/{v['auth']['key']}"
        want["auth-metrics"] = str(v["auth"]["metrics"]).lower()
    for flag in ("auth-file", "auth-metrics"):
        if flag in flags and flag not in want:
            p.add(f"{cid}: --{flag} without auth.existingSecret")
    for flag, value in want.items():
        if flags.get(flag) != value:
            p.add(f"{cid}: --{flag} is {flags.get(flag)!r}, the values say {value!r}")

    # The host's paths: read-only, and the flags name them where mounted.
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    host = {vol["name"]: vol["hostPath"] for vol in spec.get("volumes", []) if "hostPath" in vol}
    sock = n["criSocket"]
    want_paths = {"/sys/fs/cgroup"} | (set() if sock == "none" else {os.path.dirname(sock)})
    got_paths = {h["path"] for h in host.values()}
    got_paths |= {vol["hostPath"]["path"] for vol in v.get("extraVolumes") or [] if "hostPath" in vol}
    want_paths |= {vol["hostPath"]["path"] for vol in v.get("extraVolumes") or [] if "hostPath" in vol}
    if got_paths != want_paths:
        p.add(f"{did}: host paths {sorted(got_paths)}, expected exactly {sorted(want_paths)}")
    mount_of: dict[str, str] = {}
    for name, hp in host.items():
        m = mounts.get(name)
        if m is None:
            p.add(f"{cid}: host path {hp['path']} is not mounted")
            continue
        mount_of[hp["path"]] = m["mountPath"]
        if m.get("readOnly") is not True:
            p.add(f"{cid}: host path {hp['path']} must be mounted readOnly")
        if m.get("recursiveReadOnly", "") != (n.get("recursiveReadOnly") or ""):
            p.add(f"{cid}: {hp['path']}: recursiveReadOnly {m.get('recursiveReadOnly')!r} is not the value's")
        if hp.get("type") != "Directory":
            p.add(f"{did}: host path {hp['path']} should have type Directory (a missing one fails loudly)")
    if flags.get("cgroup-root") != mount_of.get("/sys/fs/cgroup"):
        p.add(f"{cid}: --cgroup-root {flags.get('cgroup-root')!r} is not where the host's cgroupfs is mounted "
              f"({mount_of.get('/sys/fs/cgroup')!r})")
    if "proc-root" in flags and flags["proc-root"] != "/proc":
        p.add(f"{cid}: --proc-root {flags['proc-root']!r}: with hostPID the container's own /proc is the host's "
              "PID namespace, and headroom's exit watcher (a pidfd) needs /proc")
    if sock == "none":
        if flags.get("cri-socket") != "none":
            p.add(f"{cid}: --cri-socket is {flags.get('cri-socket')!r} with node.criSocket none")
    else:
        sock_dir = mount_of.get(os.path.dirname(sock))
        expect = f"{sock_dir}/{os.path.basename(sock)}" if sock_dir else None
        if not expect or flags.get("cri-socket") != expect:
            p.add(f"{cid}: --cri-socket {flags.get('cri-socket')!r} is not the socket under its mounted "
                  f"directory ({expect!r})")

    # The security context: root with the capabilities named, nothing more.
    sc = c.get("securityContext") or {}
    psc = spec.get("securityContext") or {}
    if sc.get("runAsUser") != 0 or sc.get("runAsNonRoot"):
        p.add(f"{cid}: runAsUser must be 0: a non-root process loses added capabilities")
    if sc.get("privileged"):
        p.add(f"{cid}: must not be privileged")
    if sc.get("allowPrivilegeEscalation") is not False:
        p.add(f"{cid}: allowPrivilegeEscalation must be false")
    if sc.get("readOnlyRootFilesystem") is not True:
        p.add(f"{cid}: readOnlyRootFilesystem must be true")
    caps = sc.get("capabilities") or {}
    if caps.get("drop") != ["ALL"]:
        p.add(f"{cid}: capabilities must drop ALL, not {caps.get('drop')}")
    want_caps = {"SYS_PTRACE"} | ({"SYS_ADMIN"} if n["enterNetns"] else set())
    got_caps = set(caps.get("add") or [])
    if got_caps != want_caps:
        p.add(f"{cid}: capabilities add {sorted(got_caps)}, expected {sorted(want_caps)} "
              f"(SYS_ADMIN with node.enterNetns only)")
    seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    if seccomp != "RuntimeDefault":
        p.add(f"{cid}: seccompProfile must be RuntimeDefault, not {seccomp}")

    ports = {pt.get("name"): pt.get("containerPort") for pt in c.get("ports", [])}
    if ports.get("metrics") != v["port"]:
        p.add(f"{cid}: port metrics is {ports.get('metrics')}, not port ({v['port']})")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (c.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or get.get("port") not in ("metrics", v["port"]):
            p.add(f"{cid}: {probe} should GET {path} on the metrics port, not {get}")
    res = c.get("resources") or {}
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if not (res.get(kind) or {}).get(r):
                p.add(f"{cid}: resources.{kind}.{r} is missing")
    limit = (res.get("limits") or {}).get("memory")
    if limit:
        need = NODE_BASE_BYTES + int(n["maxTargets"]) * NODE_TARGET_BYTES
        if quantity_bytes(limit) < need:
            p.add(f"{cid}: memory limit {limit} is below what {n['maxTargets']} targets take "
                  f"({need / 2**20:.1f} MiB, BENCHMARKS.md): raise it with node.maxTargets")

    # Beside it: the Service, the monitors, the rules.
    services = [s for s in by_kind.get("Service", [])
                if s["spec"].get("selector") and set(s["spec"]["selector"].items()) <= set(pod_labels.items())]
    if len(services) != 1:
        p.add(f"{ident}: expected one Service in front of the DaemonSet's pods, got {len(services)}")
    else:
        svc_ports = {pt.get("name"): pt for pt in services[0]["spec"].get("ports", [])}
        if (svc_ports.get("metrics") or {}).get("targetPort") not in ("metrics", v["port"]):
            p.add(f"{ident}: the Service has no port metrics that targets headroom's")
    monitors = by_kind.get("PodMonitor", [])
    if switch_on(v, "podMonitor") != bool(monitors):
        p.add(f"{ident}: podMonitor.enabled is {v['podMonitor']['enabled']}, PodMonitors rendered: {len(monitors)}")
    for pm in monitors:
        sel = pm["spec"]["selector"]["matchLabels"]
        if not set(sel.items()) <= set(pod_labels.items()):
            p.add(f"{ident}: PodMonitor selector {sel} does not select the DaemonSet's pods")
        for ep in pm["spec"]["podMetricsEndpoints"]:
            if ep.get("honorLabels") is not True:
                p.add(f"{ident}: PodMonitor endpoint lacks honorLabels: true")
            if ep.get("port") != "metrics":
                p.add(f"{ident}: PodMonitor endpoint port {ep.get('port')} is not metrics")
    for sm in by_kind.get("ServiceMonitor", []):
        sel = sm["spec"]["selector"]["matchLabels"]
        if not services or not set(sel.items()) <= set(services[0]["metadata"]["labels"].items()):
            p.add(f"{ident}: ServiceMonitor selector {sel} does not select the metrics Service")
    rules = by_kind.get("PrometheusRule", [])
    if switch_on(v, "prometheusRule") != bool(rules):
        p.add(f"{ident}: prometheusRule.enabled is {v['prometheusRule']['enabled']}, rules rendered: {len(rules)}")
    if rules:
        (shipped,) = load_docs(ROOT / "deploy" / "prometheus" / "headroom-rules.yaml")
        names = lambda groups: sorted(r.get("alert") or r.get("record") for g in groups for r in g["rules"])
        if names(rules[0]["spec"]["groups"]) != names(shipped["groups"]):
            p.add(f"{ident}: the PrometheusRule's rules are not deploy/prometheus/headroom-rules.yaml's")


def render_fails(chart: str, values: dict) -> str | None:
    """The error of a render expected to fail, or None if it rendered."""
    try:
        render(chart, values)
    except Exception as e:  # helm_python's HelmValuesError, HelmRenderError
        return str(e)
    return None


def chart_and_renders(args: list[str]) -> tuple[str, list[tuple[str, str]], dict] | None:
    """CHART then (RENDERED, VALUES_FILE) pairs: the chart, the pairs and the
    chart's default values; None (usage printed) when a pair is incomplete."""
    chart, rest = args[0], args[1:]
    if len(rest) % 2:
        print(__doc__)
        return None
    defaults = yaml.safe_load((Path(chart) / "values.yaml").read_text(encoding="utf-8"))
    return chart, list(zip(rest[::2], rest[1::2])), defaults


def cmd_node(args: list[str]) -> int:
    p = Problems()
    parsed = chart_and_renders(args)
    if parsed is None:
        return 2
    chart, pairs, defaults = parsed
    checked = 0
    for rendered, values_file in pairs:
        v = deep_merge(defaults, load_values(values_file) or {})
        if v.get("mode") != "node":
            p.add(f"{values_file}: mode is not node")
            continue
        check_node_render(rendered, load_docs(Path(rendered)), v, p, chart_app_version(chart))
        checked += 1

    # The other branches, rendered here.
    none = deep_merge(defaults, {"mode": "node", "node": {"criSocket": "none"}})
    check_node_render("render with node.criSocket none", [d for d in yaml.safe_load_all(render(chart, none)) if d],
                      none, p, chart_app_version(chart))
    sidecar = [d for d in yaml.safe_load_all(render(chart, None)) if d]
    if any(d.get("kind") == "DaemonSet" for d in sidecar):
        p.add("the default values (mode: sidecar) render a DaemonSet")
    for values, want in (({"mode": "node", "node": {"criSocket": "run/containerd/containerd.sock"}}, "criSocket"),
                         ({"mode": "node", "example": {"enabled": True}}, "example.enabled"),
                         ({"mode": "daemonset"}, "mode")):
        err = render_fails(chart, values)
        if err is None:
            p.add(f"values {values} rendered; expected a failure naming {want}")
        elif want not in err:
            p.add(f"values {values} failed without naming {want}: {err}")
    return p.exit(f"{checked} node render(s), criSocket none, the default render and 3 bad values: "
                  "DaemonSet, mounts, flags, capabilities, Service, monitors and rules as headroom node needs")


# --- every mode: the objects of a fleet ------------------------------------------

SIDECAR_POD_LABELS = {"headroom.dev/sidecar": "true"}  # the "headroom.podLabels" template
AUTH_DIR = "/etc/headroom/auth"


def headroom_down_job_regex() -> str:
    """The job matcher of the shipped HeadroomDown rule: up{job=~"REGEX"}."""
    (doc,) = load_docs(ROOT / "deploy" / "prometheus" / "headroom-rules.yaml")
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "HeadroomDown":
                m = re.search(r'\bjob\s*=~\s*"((?:\\.|[^"\\])*)"', rule["expr"])
                if not m:
                    raise ValueError(f"HeadroomDown's expression has no job=~ matcher: {rule['expr']}")
                return m.group(1).encode().decode("unicode_escape")
    raise ValueError("no HeadroomDown rule in deploy/prometheus/headroom-rules.yaml")


def operator_jobs(monitor: dict, objects: list[dict]) -> tuple[list[str], list[str]]:
    """The job label the Prometheus Operator gives the targets of a monitor,
    and what could not be computed. As the Operator's generator does: a
    PodMonitor's targets get NAMESPACE/NAME, a ServiceMonitor's the Service's
    name; then the value of spec.jobLabel (a label of the pod or the
    Service) where it is set and not empty; then the endpoint's relabelings
    (the monitor's own, which come after the Operator's)."""
    kind, spec = monitor["kind"], monitor["spec"]
    ns = monitor["metadata"].get("namespace") or RELEASE_NAMESPACE
    selector = spec["selector"].get("matchLabels") or {}
    unknown: list[str] = []
    if kind == "PodMonitor":
        pods = [pod_template(d)["metadata"].get("labels") or {} for d in objects if pod_template(d)]
        pods = [labels for labels in pods if set(selector.items()) <= set(labels.items())]
        if not pods:
            pods = [dict(selector)]  # pods of other releases: all that is known is the selector
        jobs = [f"{ns}/{monitor['metadata']['name']}" for _ in pods]
        label_sets = pods
        endpoints = spec.get("podMetricsEndpoints") or []
    else:
        services = [d for d in objects if d.get("kind") == "Service"
                    and set(selector.items()) <= set((d["metadata"].get("labels") or {}).items())]
        if not services:
            return [], [f"ServiceMonitor/{monitor['metadata']['name']}: selects no Service of the render"]
        jobs = [svc["metadata"]["name"] for svc in services]
        label_sets = [svc["metadata"].get("labels") or {} for svc in services]
        endpoints = spec.get("endpoints") or []
    if spec.get("jobLabel"):
        for i, labels in enumerate(label_sets):
            if spec["jobLabel"] in labels:
                jobs[i] = labels[spec["jobLabel"]] or jobs[i]
            elif kind == "PodMonitor" and labels == selector:
                unknown.append(f"jobLabel {spec['jobLabel']}: the pods' value is not known here")
    out = []
    for ep in endpoints:
        for job in jobs:
            for r in ep.get("relabelings") or []:
                if r.get("targetLabel") != "job" or r.get("action", "replace") != "replace":
                    continue
                if r.get("sourceLabels"):
                    unknown.append(f"a relabeling sets job from {r['sourceLabels']}")
                    continue
                job = r.get("replacement", "$1")
            out.append(job)
    return out, unknown


def pod_template(doc: dict) -> dict | None:
    if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return doc["spec"]["template"]
    return None


def is_subset(want, got) -> bool:
    """Whether every key of `want` is in `got` with the same value (maps
    compared the same way, all else by equality)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and is_subset(x, got[k]) for k, x in want.items())
    return want == got


def headroom_containers(doc: dict) -> list[dict]:
    spec = pod_spec(doc) or {}
    return [c for c in spec.get("containers", []) + spec.get("initContainers", []) if is_sidecar(c)]


def container_settings(c: dict) -> dict[str, str]:
    """headroom's settings in a container: its flags, and its HEADROOM_* env
    as the flags they stand for."""
    out = flag_values([str(a) for a in c.get("args", [])])
    for e in c.get("env", []):
        if e["name"].startswith("HEADROOM_") and "value" in e:
            out[e["name"][len("HEADROOM_"):].lower().replace("_", "-")] = str(e["value"])
    return out


def check_monitor(ident: str, mon: dict, v: dict, objects: list[dict], job_regex: str, p: Problems) -> list[str]:
    kind = mon["kind"]
    mid = f"{ident}: {kind}/{mon['metadata']['name']}"
    values = v["podMonitor"] if kind == "PodMonitor" else v["serviceMonitor"]
    field = "podMetricsEndpoints" if kind == "PodMonitor" else "endpoints"
    endpoints = mon["spec"].get(field) or []
    if len(endpoints) != 1:
        p.add(f"{mid}: expected one endpoint, got {len(endpoints)}")
    auth = v["auth"]
    for ep in endpoints:
        if ep.get("honorLabels") is not True:
            p.add(f"{mid}: honorLabels must be true: headroom's namespace, pod and container are the target's")
        if ep.get("port") != "metrics" or ep.get("path") != "/metrics":
            p.add(f"{mid}: endpoint {ep.get('port')} {ep.get('path')} is not port metrics, path /metrics")
        relabelings = ep.get("relabelings") or []
        drop = {"action": "labeldrop", "regex": "container"}
        if drop not in relabelings:
            p.add(f"{mid}: the Operator's container target label (headroom's own container) is not dropped")
        user = values.get("relabelings") or []
        if user and relabelings[-len(user):] != user:
            p.add(f"{mid}: relabelings do not end with {kind}'s relabelings values")
        if (ep.get("metricRelabelings") or []) != (values.get("metricRelabelings") or []):
            p.add(f"{mid}: metricRelabelings {ep.get('metricRelabelings')} are not the values'")
        if ep.get("interval") != values["interval"] or ep.get("scrapeTimeout") != values["scrapeTimeout"]:
            p.add(f"{mid}: interval and scrapeTimeout are not the values'")
        want_auth = {}
        if auth["metrics"] and auth["type"] == "basic":
            want_auth = {"basicAuth": {
                "username": {"name": auth["existingSecret"], "key": auth["usernameKey"]},
                "password": {"name": auth["existingSecret"], "key": auth["passwordKey"]}}}
        elif auth["metrics"]:
            want_auth = {"authorization": {"type": "Bearer", "credentials": {
                "name": auth["existingSecret"], "key": auth["key"]}}}
        got_auth = {k: ep[k] for k in ("basicAuth", "authorization", "bearerTokenSecret") if k in ep}
        if got_auth != want_auth:
            p.add(f"{mid}: scrape credentials {got_auth}, expected {want_auth} (auth.metrics "
                  f"{auth['metrics']}, type {auth['type']})")
    jobs, unknown = operator_jobs(mon, objects)
    for u in unknown:
        p.add(f"{mid}: cannot tell the job: {u}")
    for job in jobs:
        if not re.fullmatch(job_regex, job):
            p.add(f"{mid}: the Operator gives its targets job={job!r}, which HeadroomDown's "
                  f'up{{job=~"{job_regex}"}} does not match: the alert would never fire')
    return [f"{kind}/{mon['metadata']['name']} job={job}" for job in jobs]


def check_headroom_pod(ident: str, doc: dict, v: dict, app_version: str, p: Problems) -> None:
    """The values every headroom container takes, in either mode."""
    spec = pod_spec(doc)
    did = f"{ident}: {doc['kind']}/{doc['metadata']['name']}"
    for c in headroom_containers(doc):
        cid = f"{did} container {c['name']}"
        want = expected_image(v["image"], app_version)
        if c.get("image") != want:
            p.add(f"{cid}: image {c.get('image')}, the image values give {want}")
        if (c.get("envFrom") or []) != (v.get("envFrom") or []):
            p.add(f"{cid}: envFrom {c.get('envFrom')} is not the values' {v.get('envFrom')}")
        mounts = {m["name"]: m for m in c.get("volumeMounts") or []}
        volumes = {vol["name"]: vol for vol in spec.get("volumes") or []}
        for m in v.get("extraVolumeMounts") or []:
            if mounts.get(m["name"]) != m:
                p.add(f"{cid}: extraVolumeMounts item {m['name']} is not mounted as given")
        for vol in v.get("extraVolumes") or []:
            if volumes.get(vol["name"]) != vol:
                p.add(f"{did}: extraVolumes item {vol['name']} is not in the pod as given")
        if not is_subset(v.get("securityContext") or {}, c.get("securityContext") or {}):
            p.add(f"{cid}: securityContext {c.get('securityContext')} lacks the values' {v['securityContext']}")
        sc = c.get("securityContext") or {}
        for key, value in (("readOnlyRootFilesystem", True), ("allowPrivilegeEscalation", False)):
            if key not in (v.get("securityContext") or {}) and sc.get(key) is not value:
                p.add(f"{cid}: the default {key}: {value} was lost in the merge")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            p.add(f"{cid}: capabilities drop ALL was lost in the merge")
        settings = container_settings(c)
        auth = v["auth"]
        if auth["existingSecret"]:
            vol = volumes.get("headroom-auth") or {}
            secret = vol.get("secret") or {}
            if secret.get("secretName") != auth["existingSecret"]:
                p.add(f"{did}: no volume of the auth Secret {auth['existingSecret']}")
            if [i.get("key") for i in secret.get("items") or [{"key": auth["key"]}]] != [auth["key"]]:
                p.add(f"{did}: the auth volume does not hold the Secret's key {auth['key']}")
            m = mounts.get("headroom-auth") or {}
            if m.get("readOnly") is not True or m.get("subPath") or m.get("mountPath") != AUTH_DIR:
                p.add(f"{cid}: the auth Secret must be mounted whole (no subPath: the kubelet updates only "
                      f"those), read-only, at {AUTH_DIR}: {m}")
            if settings.get("auth-file") != f"{AUTH_DIR}/{auth['key']}":
                p.add(f"{cid}: --auth-file is {settings.get('auth-file')!r}, not the mounted key")
            if settings.get("auth-metrics") != str(auth["metrics"]).lower():
                p.add(f"{cid}: --auth-metrics is {settings.get('auth-metrics')!r}, auth.metrics is {auth['metrics']}")
        elif "auth-file" in settings or "headroom-auth" in volumes:
            p.add(f"{cid}: auth is set up without auth.existingSecret")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            got = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
            if got not in (None, path):
                p.add(f"{cid}: {probe} GETs {got}: the probes use the open {path}")
    secrets = spec.get("imagePullSecrets") or []
    for s in v.get("imagePullSecrets") or []:
        if s not in secrets:
            p.add(f"{did}: imagePullSecrets lacks {s}")


def check_network_policy(ident: str, objects: list[dict], v: dict, p: Problems) -> None:
    policies = [d for d in objects if d.get("kind") == "NetworkPolicy"]
    if v["networkPolicy"]["enabled"] != bool(policies):
        p.add(f"{ident}: networkPolicy.enabled is {v['networkPolicy']['enabled']}, NetworkPolicies: {len(policies)}")
    np = v["networkPolicy"]
    pods = [pod_template(d) for d in objects if pod_template(d) and headroom_containers(d)]
    for pol in policies:
        pid = f"{ident}: NetworkPolicy/{pol['metadata']['name']}"
        spec = pol["spec"]
        sel = spec["podSelector"].get("matchLabels") or {}
        if not sel:
            p.add(f"{pid}: selects every pod of the namespace")
        want_sel = np.get("podSelector") or None
        if want_sel and sel != want_sel:
            p.add(f"{pid}: podSelector {sel} is not networkPolicy.podSelector {want_sel}")
        if not want_sel and not any(set(sel.items()) <= set((t["metadata"].get("labels") or {}).items()) for t in pods):
            p.add(f"{pid}: podSelector {sel} selects none of headroom's pods")
        if spec.get("policyTypes") != ["Ingress"]:
            p.add(f"{pid}: policyTypes {spec.get('policyTypes')}: Ingress only (egress stays open for the "
                  "Go endpoints and the alert receivers)")
        rules = spec.get("ingress") or []
        metrics = [{"port": v["port"], "protocol": "TCP"}]
        want = [{"ports": metrics, **({"from": np["from"]} if np.get("from") else {})}]
        if np.get("nodeCidrs"):
            want.append({"ports": metrics, "from": [{"ipBlock": {"cidr": c}} for c in np["nodeCidrs"]]})
        want += np.get("extraIngress") or []
        if rules != want:
            p.add(f"{pid}: ingress {rules}, expected {want}: the metrics port from networkPolicy.from, "
                  "the probes' nodeCidrs, then extraIngress")


def check_chart_render(ident: str, objects: list[dict], v: dict, chart: str, job_regex: str,
                       p: Problems) -> list[str]:
    """What every render of the chart must hold, whatever its mode."""
    mode = v["mode"]
    app_version = chart_app_version(chart)
    by_kind: dict[str, list[dict]] = {}
    for d in objects:
        by_kind.setdefault(d.get("kind"), []).append(d)
    allowed = {
        "sidecar": {"Deployment", "Service", "ServiceMonitor", "PodMonitor", "NetworkPolicy"},
        "node": {"DaemonSet", "Service", "ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap",
                 "NetworkPolicy"},
        "cluster": {"PrometheusRule", "ConfigMap", "PodMonitor"},
    }[mode]
    for kind in sorted(set(by_kind) - allowed):
        p.add(f"{ident}: mode {mode} renders a {kind}; it renders only {sorted(allowed)}")

    # Once per cluster: the rules, the dashboard, and in mode cluster one
    # PodMonitor of every sidecar in every namespace.
    rules = by_kind.get("PrometheusRule", [])
    if len(rules) != (1 if switch_on(v, "prometheusRule") and mode != "sidecar" else 0):
        p.add(f"{ident}: {len(rules)} PrometheusRule(s) with mode {mode}, prometheusRule.enabled "
              f"{v['prometheusRule']['enabled']}")
    (shipped,) = load_docs(ROOT / "deploy" / "prometheus" / "headroom-rules.yaml")
    base = v["prometheusRule"].get("runbookBaseUrl")
    if base:
        shipped = json.loads(json.dumps(shipped).replace(RUNBOOK_BASE, base.rstrip("/") + "/"))
    for r in rules:
        if r["spec"]["groups"] != shipped["groups"]:
            p.add(f"{ident}: PrometheusRule/{r['metadata']['name']} is not deploy/prometheus/headroom-rules.yaml"
                  + (f" with runbooks under {base}" if base else ""))
    g = v["grafanaDashboard"]
    dashboards = [d for d in by_kind.get("ConfigMap", []) if "headroom-dashboard.json" in (d.get("data") or {})]
    if len(dashboards) != len(by_kind.get("ConfigMap", [])):
        p.add(f"{ident}: a ConfigMap other than the dashboard's")
    if len(dashboards) != (1 if switch_on(v, "grafanaDashboard") and mode != "sidecar" else 0):
        p.add(f"{ident}: {len(dashboards)} dashboard ConfigMap(s) with mode {mode}, grafanaDashboard.enabled "
              f"{g['enabled']}")
    shipped_dash = json.loads((ROOT / "deploy" / "grafana" / "headroom-dashboard.json").read_text(encoding="utf-8"))
    for cm in dashboards:
        cid = f"{ident}: ConfigMap/{cm['metadata']['name']}"
        meta = cm["metadata"]
        if (meta.get("labels") or {}).get(g["label"]) != str(g["labelValue"]):
            p.add(f"{cid}: no label {g['label']}: {g['labelValue']!r}, which Grafana's sidecar looks for")
        folder = (meta.get("annotations") or {}).get(g["folderAnnotation"])
        if (folder or "") != (g.get("folder") or ""):
            p.add(f"{cid}: folder annotation {g['folderAnnotation']} is {folder!r}, not {g.get('folder')!r}")
        if meta.get("namespace", RELEASE_NAMESPACE) != (g.get("namespace") or RELEASE_NAMESPACE):
            p.add(f"{cid}: in namespace {meta.get('namespace')}, not grafanaDashboard.namespace")
        if json.loads(cm["data"]["headroom-dashboard.json"]) != shipped_dash:
            p.add(f"{cid}: the JSON is not deploy/grafana/headroom-dashboard.json")

    # The monitors: honorLabels, the job HeadroomDown matches, auth.
    monitors = by_kind.get("PodMonitor", []) + by_kind.get("ServiceMonitor", [])
    jobs = []
    for mon in monitors:
        jobs += check_monitor(ident, mon, v, objects, job_regex, p)
    if mode == "cluster":
        pms = by_kind.get("PodMonitor", [])
        if len(pms) != (1 if switch_on(v, "podMonitor") else 0):
            p.add(f"{ident}: {len(pms)} PodMonitor(s) in mode cluster, podMonitor.enabled {v['podMonitor']['enabled']}")
        for pm in pms:
            if pm["spec"].get("namespaceSelector") != {"any": True}:
                p.add(f"{ident}: the cluster's PodMonitor must look in every namespace (namespaceSelector any)")
            want = v["podMonitor"].get("selector") or SIDECAR_POD_LABELS
            if pm["spec"]["selector"].get("matchLabels") != want:
                p.add(f"{ident}: the cluster's PodMonitor selects {pm['spec']['selector']}, not {want}")

    # headroom's pods, and who may reach them.
    for d in objects:
        if headroom_containers(d):
            check_headroom_pod(ident, d, v, app_version, p)
            if mode == "sidecar":
                labels = pod_template(d)["metadata"].get("labels") or {}
                if not set(SIDECAR_POD_LABELS.items()) <= set(labels.items()):
                    p.add(f"{ident}: {d['kind']}/{d['metadata']['name']}: the pod lacks {SIDECAR_POD_LABELS}, "
                          "which the cluster's PodMonitor selects")
    check_network_policy(ident, objects, v, p)
    return jobs


# Values that must not render, and what the failure must name.
BAD_CHART_VALUES = [
    ({"prometheusRule": {"enabled": True}}, None, "prometheusRule.enabled"),
    ({"grafanaDashboard": {"enabled": True}}, None, "grafanaDashboard.enabled"),
    ({"mode": "cluster", "example": {"enabled": True}}, None, "example.enabled"),
    ({"mode": "cluster", "serviceMonitor": {"enabled": True}}, None, "serviceMonitor.enabled"),
    ({"mode": "cluster", "networkPolicy": {"enabled": True}}, None, "networkPolicy.enabled"),
    ({"mode": "node", "auth": {"metrics": True}}, None, "auth.existingSecret"),
    ({"example": {"enabled": True}, "nativeSidecar": True}, "v1.28.9", "nativeSidecar"),
    ({"example": {"enabled": True}, "fullnameOverride": "memwatch", "podMonitor": {"enabled": True}},
     None, "HeadroomDown"),
    ({"mode": "cluster", "nameOverride": "memwatch"}, None, "HeadroomDown"),
]


def cmd_chart(args: list[str]) -> int:
    p = Problems()
    parsed = chart_and_renders(args)
    if parsed is None:
        return 2
    chart, pairs, defaults = parsed
    job_regex = headroom_down_job_regex()
    modes: dict[str, int] = {}
    for rendered, values_file in pairs:
        v = deep_merge(defaults, load_values(values_file) or {})
        jobs = check_chart_render(rendered, load_docs(Path(rendered)), v, chart, job_regex, p)
        modes[v["mode"]] = modes.get(v["mode"], 0) + 1
        print(f"{values_file or 'default values'} (mode {v['mode']}): " + (", ".join(jobs) or "no monitor"))
    for want in ("sidecar", "node", "cluster"):
        if not modes.get(want):
            p.add(f"no render of mode {want} was checked")
    for values, kube, want in BAD_CHART_VALUES:
        err = None
        try:
            render(chart, values, kube)
        except Exception as e:  # helm_python's HelmValuesError, HelmRenderError
            err = str(e)
        if err is None:
            p.add(f"values {values}{f' on Kubernetes {kube}' if kube else ''} rendered; expected a failure "
                  f"naming {want}")
        elif want not in err:
            p.add(f"values {values} failed without naming {want}: {err}")
    try:
        render(chart, {"example": {"enabled": True}, "nativeSidecar": True}, "v1.29.0")
    except Exception as e:
        p.add(f"nativeSidecar on Kubernetes 1.29.0 failed to render: {e}")
    return p.exit(f"{sum(modes.values())} render(s) ({', '.join(f'{m}: {n}' for m, n in sorted(modes.items()))}): "
                  f"objects per mode, rules and dashboard copies, monitors (honorLabels, a job that "
                  f"HeadroomDown's job=~\"{job_regex}\" matches, auth), image, auth mounts, NetworkPolicy; "
                  f"{len(BAD_CHART_VALUES)} bad values refused")


# --- grafana ------------------------------------------------------------------


def all_panels(panels: list) -> list[dict]:
    out = []
    for panel in panels or []:
        out.append(panel)
        out.extend(all_panels(panel.get("panels", [])))
    return out


GRAFANA_VARS = {
    "$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h",
    "$cluster": ".*", "$namespace": ".*", "$pod": ".*", "$horizon": "1800",
}


def fill_grafana_vars(expr: str) -> str:
    for var, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace("${" + var[1:] + "}", value).replace(var, value)
    return expr


def cmd_dashboard(path: str, workdir: str) -> int:
    from check_dashboard import annotation_queries, dashboard_queries, variable_queries

    p = Problems()
    dash = json.loads(Path(path).read_text(encoding="utf-8"))
    variables = {v.get("name"): v for v in (dash.get("templating") or {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        p.add("no `datasource` template variable of type datasource for prometheus")
    if dash.get("uid") in (None, "") or not dash.get("title"):
        p.add("the dashboard needs a uid and a title")
    ids = set()
    panels = all_panels(dash.get("panels", []))
    for panel in panels:
        title = panel.get("title", "?")
        if panel.get("id") in ids:
            p.add(f"panel {title}: duplicate id {panel.get('id')}")
        ids.add(panel.get("id"))
        gp = panel.get("gridPos") or {}
        if not all(isinstance(gp.get(k), int) for k in ("x", "y", "w", "h")) or gp["x"] + gp["w"] > 24:
            p.add(f"panel {title}: bad gridPos {gp}")
        if panel.get("type") == "row":
            continue
        if not panel.get("targets"):
            p.add(f"panel {title}: no query")
        for target in panel.get("targets", []):
            uid = (target.get("datasource") or panel.get("datasource") or {}).get("uid")
            if uid != "${datasource}":
                p.add(f"panel {title}: datasource {uid!r} is not ${{datasource}}")

    # PromQL syntax: every query as a recording rule, for promtool.
    for ann in (dash.get("annotations") or {}).get("list", []):
        if ann.get("builtIn"):
            continue
        if (ann.get("datasource") or {}).get("uid") != "${datasource}":
            p.add(f"annotation {ann.get('name')}: datasource is not ${{datasource}}")
    queries = dashboard_queries(dash.get("panels", [])) + variable_queries(dash) + annotation_queries(dash)
    for where, expr in queries:
        left = re.findall(r"\$\{?\w+", fill_grafana_vars(expr))
        if left:
            p.add(f"{where}: no value to check with for Grafana variable(s) {left}")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": fill_grafana_vars(expr)}
        for i, (_, expr) in enumerate(queries)]}]}
    out = Path(workdir) / "dashboard-queries.yaml"
    out.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    result = subprocess.run(["promtool", "check", "rules", str(out)], capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout + result.stderr, end="")
        p.add(f"a query is not valid PromQL (see {out})")
    return p.exit(f"{len(panels)} panels: ids, layout, datasource ok; {len(queries)} queries parse")


# --- dockerfile -----------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerignore_allows(patterns: list[str], path: str) -> bool:
    """Whether a path reaches the build context (last matching pattern wins;
    a pattern that matches a parent directory matches the path too)."""
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    allowed = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = os.path.normpath(pattern[1:] if negate else pattern).lstrip("/")
        if any(fnmatch.fnmatchcase(c, pat) for c in candidates):
            allowed = negate
    return allowed


def cmd_dockerfile(dockerfile: str, dockerignore: str) -> int:
    p = Problems()
    ins = dockerfile_instructions(Path(dockerfile).read_text(encoding="utf-8"))
    stages = [i for i, (w, _) in enumerate(ins) if w == "FROM"]
    if len(stages) < 2:
        p.add("expected a multi-stage build (a builder and a runtime stage)")
        return p.exit("")
    final = ins[stages[-1]:]
    base = final[0][1].split()[0]
    if "distroless" not in base:
        p.add(f"runtime base {base} is not a distroless image")
    words = {w: r for w, r in final}
    user = words.get("USER", "")
    uid = user.split(":")[0]
    if not uid.isdigit() or int(uid) == 0:
        p.add(f"runtime USER {user!r} must be a numeric non-root UID")
    if json.loads(words.get("ENTRYPOINT", "null") or "null") != ["headroom"]:
        p.add(f'ENTRYPOINT {words.get("ENTRYPOINT")!r} is not ["headroom"]')
    if "9184" not in words.get("EXPOSE", "").split():
        p.add("EXPOSE 9184 is missing")
    for w, rest in final:
        if w == "RUN":
            p.add(f"RUN in the runtime stage needs a shell, which it has not: {rest}")
        if w == "COPY" and "--from=" not in rest:
            p.add(f"the runtime stage should copy only from the build stage: COPY {rest}")
    patterns = [line.strip() for line in Path(dockerignore).read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.strip().startswith("#")]
    for w, rest in ins[: stages[-1]]:
        if w != "COPY" or "--from=" in rest:
            continue
        args = [a for a in rest.split() if not a.startswith("--")]
        if args and args[0].startswith("["):
            args = json.loads(rest[rest.index("["):])
        for src in args[:-1]:
            if not (ROOT / src).exists():
                p.add(f"COPY source {src} does not exist")
            elif not dockerignore_allows(patterns, src):
                p.add(f"COPY source {src} is excluded by .dockerignore")
    for must_skip in ("target", ".git"):
        if dockerignore_allows(patterns, must_skip):
            p.add(f".dockerignore lets {must_skip}/ into the build context")
    return p.exit("multi-stage, distroless, numeric non-root USER, ENTRYPOINT, EXPOSE, context ok")


# --- prometheus config ---------------------------------------------------------

# kubernetes_sd_config keys and roles, from Prometheus' configuration docs.
K8S_SD_KEYS = {
    "api_server", "role", "kubeconfig_file", "namespaces", "selectors", "attach_metadata",
    "basic_auth", "authorization", "oauth2", "follow_redirects", "enable_http2",
    "tls_config", "proxy_url", "no_proxy", "proxy_from_environment", "proxy_connect_header",
}
K8S_SD_ROLES = {"node", "service", "pod", "endpoints", "endpointslice", "ingress"}


def cmd_prom_config(config: str, workdir: str) -> int:
    """promtool check config, on a copy whose kubernetes_sd_configs are checked
    here and replaced by a static target, since Debian builds Prometheus
    without Kubernetes service discovery. Everything else (globals, relabel
    rules, the rule files) is promtool's to check."""
    p = Problems()
    src = Path(config)
    doc = yaml.safe_load(src.read_text(encoding="utf-8"))
    for job in doc.get("scrape_configs", []):
        if job.get("honor_labels") is not True:
            p.add(f"job {job['job_name']}: honor_labels must be true (headroom's series name the watched container)")
        for sd in job.pop("kubernetes_sd_configs", None) or []:
            for key in set(sd) - K8S_SD_KEYS:
                p.add(f"job {job['job_name']}: kubernetes_sd_configs has no field {key}")
            if sd.get("role") not in K8S_SD_ROLES:
                p.add(f"job {job['job_name']}: kubernetes_sd_configs role {sd.get('role')!r}")
            job.setdefault("static_configs", []).append({"targets": ["127.0.0.1:9184"]})
    out = Path(workdir) / "prometheus"
    out.mkdir(parents=True, exist_ok=True)
    for rule_file in doc.get("rule_files", []):
        shutil.copy(src.parent / rule_file, out / Path(rule_file).name)
    (out / src.name).write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    result = subprocess.run(["promtool", "check", "config", str(out / src.name)],
                            capture_output=True, text=True)
    print(result.stdout + result.stderr, end="")
    if result.returncode != 0:
        p.add("promtool check config failed")
    return p.exit("promtool check config: ok (kubernetes_sd_configs checked by field and role)")


def main(argv: list[str]) -> int:
    commands = {
        "parse-yaml": (cmd_parse_yaml, 1, None, True),
        "rules": (cmd_rules, 3, 3, False),
        "consistency": (cmd_consistency, 0, 0, False),
        "chart-files": (cmd_chart_files, 1, 1, False),
        "helm-lint": (cmd_helm_lint, 2, 3, False),
        "helm-render": (cmd_helm_render, 2, 3, False),
        "helm-parent": (cmd_helm_parent, 2, 2, False),
        "k8s-validate": (cmd_k8s_validate, 2, None, "first"),
        "sidecar": (cmd_sidecar, 1, None, True),
        "node": (cmd_node, 3, None, True),
        "chart": (cmd_chart, 3, None, True),
        "dashboard": (cmd_dashboard, 2, 2, False),
        "dockerfile": (cmd_dockerfile, 2, 2, False),
        "prom-config": (cmd_prom_config, 2, 2, False),
        "docs": (cmd_docs, 2, None, "first"),
    }
    if len(argv) < 2 or argv[1] not in commands:
        print(__doc__)
        return 2
    func, least, most, varargs = commands[argv[1]]
    args = argv[2:]
    if len(args) < least or (most is not None and len(args) > most):
        print(__doc__)
        return 2
    try:
        if varargs is True:
            return func(args)
        if varargs == "first":
            return func(args[0], args[1:])
        return func(*args)
    except OSError as e:
        print(f"{argv[1]}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
