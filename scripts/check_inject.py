#!/usr/bin/env python3
"""Checks `headroom inject` and the kustomize component against the Helm
chart; run by scripts/check-deploy.sh (and tests/inject.rs) in the venv of
scripts/deploy-requirements.txt.

  check_inject.py WORKDIR [VERSIONS]

1. The chart's sidecar: the example pod (deploy/kubernetes/example-deployment.yaml
   without its headroom container) injected with `headroom inject` equals the
   chart's example rendered by Helm with the matching values: the sidecar
   container field for field, the volumes and shareProcessNamespace; for the
   default flags, the native sidecar, and root with CAP_SYS_PTRACE with a
   readiness probe and no profiles.
2. Kubernetes: every document `headroom inject` writes for the example and
   for tests/fixtures/inject/every-kind.yaml (as a regular and as a native
   sidecar) validates against the schemas of VERSIONS (comma-separated,
   default 1.29.0,1.30.0; strict) and passes check_deploy.py's sidecar
   conventions; a second pass writes the same bytes; documents without a
   workload come out as they went in.
3. The kustomize component deploy/kustomize/headroom-sidecar, applied by
   kustomize (`kubectl kustomize`, from the venv) with the overlay patch that
   docs/deploying.md shows, gives the example pod the same sidecar as
   `headroom inject`, and its output validates too.

The headroom binary is $HEADROOM_BIN, else built here with cargo.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_deploy  # noqa: E402  (the shared helpers: render, validation, sidecar conventions)
from check_deploy import Problems, load_docs, pod_spec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "headroom"
EXAMPLE = ROOT / "deploy" / "kubernetes" / "example-deployment.yaml"
EVERY_KIND = ROOT / "tests" / "fixtures" / "inject" / "every-kind.yaml"
COMPONENT = ROOT / "deploy" / "kustomize" / "headroom-sidecar"
GO_URL = "http://127.0.0.1:9091/metrics"

# `headroom inject` flags and the chart values that ask for the same sidecar.
VARIANTS = [
    ("default flags (profiles on)", [], {"profiles": {"enabled": True}}),
    ("--native-sidecar", ["--native-sidecar"], {"profiles": {"enabled": True}, "nativeSidecar": True}),
    (
        "--proc-access sys-ptrace --readiness-probe --no-profiles --limit-basis rss",
        ["--proc-access", "sys-ptrace", "--readiness-probe", "--no-profiles", "--limit-basis", "rss"],
        {"procAccess": "sysPtrace", "readinessProbe": {"enabled": True}, "profiles": {"enabled": False},
         "limitBasis": "rss"},
    ),
]

# The overlay patch that points the component at the Go container: the one
# docs/deploying.md shows ("Adding the sidecar"), with the example's names.
OVERLAY_PATCH = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: go-app
spec:
  template:
    spec:
      containers:
        - name: headroom
          env:
            - name: HEADROOM_PROCESS
              value: pushgateway
            - name: HEADROOM_GO_URL
              value: http://127.0.0.1:9091/metrics
            - name: HEADROOM_MEMORY_LIMIT
              valueFrom:
                resourceFieldRef:
                  containerName: app
                  resource: limits.memory
            - name: CONTAINER_NAME
              value: app
            - name: HEADROOM_TARGET_CONTAINER
              value: app
"""


def headroom_bin() -> str:
    if os.environ.get("HEADROOM_BIN"):
        return os.environ["HEADROOM_BIN"]
    out = subprocess.run(
        ["cargo", "build", "--quiet", "--locked", "--bin", "headroom", "--message-format=json-render-diagnostics"],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") and msg["target"]["name"] == "headroom":
            return msg["executable"]
    raise SystemExit("cargo built no headroom binary")


def inject(binary: str, text: str, args: list[str]) -> str:
    result = subprocess.run([binary, "inject", *args, "-"], input=text, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"headroom inject {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result.stdout


def bare_example() -> str:
    """The example Deployment without its headroom container."""
    (doc,) = load_docs(EXAMPLE)
    spec = pod_spec(doc)
    spec["containers"] = [c for c in spec["containers"] if c["name"] != "headroom"]
    return yaml.safe_dump(doc, sort_keys=False)


def headroom_container(spec: dict) -> dict | None:
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        if c["name"] == "headroom":
            return c
    return None


def chart_example_spec(values: dict) -> dict:
    values = copy.deepcopy(values)
    values["example"] = {"enabled": True}
    docs = [d for d in yaml.safe_load_all(check_deploy.render(str(CHART), values)) if d]
    (deployment,) = [d for d in docs if d.get("kind") == "Deployment"]
    return pod_spec(deployment)


def diff(a, b, path: str = "") -> list[str]:
    """Where two parsed objects differ, as paths."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: {a.get(k, '(missing)')!r} != {b.get(k, '(missing)')!r}")
            else:
                out.extend(diff(a[k], b[k], f"{path}.{k}"))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def by_name(items: list | None) -> dict:
    return {i["name"]: i for i in items or []}


def check_chart(binary: str, p: Problems) -> None:
    bare = bare_example()
    for name, flags, values in VARIANTS:
        found = len(p.items)
        got = pod_spec(yaml.safe_load(inject(binary, bare, ["--go-url", GO_URL, *flags])))
        want = chart_example_spec(values)
        native = "nativeSidecar" in values
        for spec, who in ((got, "inject"), (want, "chart")):
            where = spec.get("initContainers" if native else "containers", [])
            if not any(c["name"] == "headroom" for c in where):
                p.add(f"{name}: the {who}'s sidecar is not in {'initContainers' if native else 'containers'}")
        for problem in diff(headroom_container(got), headroom_container(want), "container"):
            p.add(f"{name}: inject != chart: {problem}")
        for problem in diff(got.get("volumes"), want.get("volumes"), "volumes"):
            p.add(f"{name}: inject != chart: {problem}")
        if got.get("shareProcessNamespace") is not True:
            p.add(f"{name}: inject did not set shareProcessNamespace: true")
        if len(p.items) == found:
            print(f"ok: {name}: the sidecar, volumes and shareProcessNamespace are the chart's")


def flatten(docs: list[dict]) -> list[dict]:
    """A kind: List's items in its place."""
    out = []
    for d in docs:
        out.extend(d.get("items") or [] if d.get("kind") == "List" else [d])
    return out


def any_pod_spec(doc: dict) -> dict | None:
    """The pod spec of every kind inject knows (check_deploy's pod_spec
    leaves out ReplicationController and CronJob)."""
    kind = doc.get("kind")
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind == "ReplicationController":
        return doc["spec"]["template"]["spec"]
    return pod_spec(doc)


def strip_injected(after: dict, before: dict) -> dict:
    """`after` without what inject added, for comparison with `before`."""
    after = copy.deepcopy(after)
    a, b = any_pod_spec(after), any_pod_spec(before)
    if a is None or headroom_container(b) is not None:
        return after
    for key in ("containers", "initContainers"):
        if key in a:
            a[key] = [c for c in a[key] if c["name"] != "headroom"]
            if not a[key] and key not in b:
                del a[key]
    if "volumes" in a:
        a["volumes"] = [v for v in a["volumes"] if v["name"] != "headroom-profiles"]
        if not a["volumes"] and "volumes" not in b:
            del a["volumes"]
    if "shareProcessNamespace" in b:
        a["shareProcessNamespace"] = b["shareProcessNamespace"]
    else:
        a.pop("shareProcessNamespace", None)
    # The pod label the chart's cluster install selects sidecars by.
    ta, tb = pod_template(after), pod_template(before)
    meta_a, meta_b = ta.get("metadata") or {}, tb.get("metadata")
    labels = meta_a.get("labels") or {}
    if SIDECAR_LABEL not in ((meta_b or {}).get("labels") or {}):
        labels.pop(SIDECAR_LABEL, None)
    if meta_b is None:
        if not labels and set(meta_a) <= {"labels"}:
            ta.pop("metadata", None)
    elif "labels" not in meta_b and not labels:
        meta_a.pop("labels", None)
    return after


SIDECAR_LABEL = "headroom.dev/sidecar"


def pod_template(doc: dict) -> dict:
    """The object that holds the pod's metadata and spec."""
    kind = doc.get("kind")
    if kind == "Pod":
        return doc
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]
    return doc["spec"]["template"]


def check_outputs(binary: str, workdir: Path, versions: str, p: Problems) -> None:
    inputs = [
        ("example", bare_example(), ["--go-url", GO_URL]),
        ("example, the file as it is (already injected)", EXAMPLE.read_text(encoding="utf-8"), []),
        ("every-kind", EVERY_KIND.read_text(encoding="utf-8"), ["--container", "app"]),
        ("every-kind native", EVERY_KIND.read_text(encoding="utf-8"), ["--container", "app", "--native-sidecar"]),
    ]
    files = []
    for i, (name, text, flags) in enumerate(inputs):
        out = inject(binary, text, flags)
        if inject(binary, out, flags) != out:
            p.add(f"{name}: a second pass changed the output")
        before, after = flatten(list(yaml.safe_load_all(text))), flatten(list(yaml.safe_load_all(out)))
        if len(before) != len(after):
            p.add(f"{name}: {len(before)} objects in, {len(after)} out")
        for b, a in zip(before, after):
            ident = f"{name}: {a.get('kind')}/{(a.get('metadata') or {}).get('name')}"
            for problem in diff(strip_injected(a, b), b):
                p.add(f"{ident}: changed besides the sidecar: {problem}")
        path = workdir / f"inject-{i}.yaml"
        path.write_text(yaml.safe_dump_all(after, sort_keys=False), encoding="utf-8")
        files.append(str(path))
        print(f"ok: {name}: {len(after)} objects written to {path}")
    if check_deploy.cmd_k8s_validate(versions, files) != 0:
        p.add("an injected object does not validate (above)")
    if check_deploy.cmd_sidecar(files) != 0:
        p.add("an injected sidecar breaks the sidecar conventions (above)")


def kustomize(args: list[str]) -> str:
    kubectl = Path(sys.executable).parent / "kubectl"
    result = subprocess.run([str(kubectl), "kustomize", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {' '.join(args)}:\n{result.stderr}")
    return result.stdout


def check_component(binary: str, workdir: Path, versions: str, p: Problems) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base, overlay = Path(tmp) / "base", Path(tmp) / "overlay"
        base.mkdir()
        overlay.mkdir()
        (base / "deployment.yaml").write_text(bare_example(), encoding="utf-8")
        (base / "kustomization.yaml").write_text("resources:\n  - deployment.yaml\n", encoding="utf-8")
        (overlay / "headroom-target.yaml").write_text(OVERLAY_PATCH, encoding="utf-8")
        component = os.path.relpath(COMPONENT, overlay)
        (overlay / "kustomization.yaml").write_text(
            "resources:\n  - ../base\n"
            f"components:\n  - {component}\n"
            "patches:\n  - path: headroom-target.yaml\n", encoding="utf-8")
        text = kustomize([str(overlay)])
    out = workdir / "kustomize-example.yaml"
    out.write_text(text, encoding="utf-8")
    (built,) = [d for d in yaml.safe_load_all(text) if d]
    injected = yaml.safe_load(inject(binary, bare_example(), ["--go-url", GO_URL]))
    got, want = pod_spec(built), pod_spec(injected)
    found = len(p.items)
    # kustomize's strategic merge puts new list items first: compare lists
    # of named items by name.
    got_c, want_c = by_name(got.get("containers")), by_name(want.get("containers"))
    for c in (got_c, want_c):
        if "headroom" in c:
            c["headroom"] = dict(c["headroom"], env=by_name(c["headroom"].get("env")))
    for problem in diff(got_c, want_c, "containers"):
        p.add(f"kustomize component != headroom inject: {problem}")
    for problem in diff(by_name(got.get("volumes")), by_name(want.get("volumes")), "volumes"):
        p.add(f"kustomize component != headroom inject: {problem}")
    if got.get("shareProcessNamespace") is not True:
        p.add("kustomize component: shareProcessNamespace is not true")
    if len(p.items) == found:
        print(f"ok: kustomize with the component: the same pod as headroom inject ({out})")
    if check_deploy.cmd_k8s_validate(versions, [str(out)]) != 0:
        p.add("the component's output does not validate (above)")
    if check_deploy.cmd_sidecar([str(out)]) != 0:
        p.add("the component's sidecar breaks the sidecar conventions (above)")


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__)
        return 2
    workdir = Path(argv[1])
    workdir.mkdir(parents=True, exist_ok=True)
    versions = argv[2] if len(argv) == 3 else "1.29.0,1.30.0"
    binary = headroom_bin()
    p = Problems()
    for step in (lambda: check_chart(binary, p),
                 lambda: check_outputs(binary, workdir, versions, p),
                 lambda: check_component(binary, workdir, versions, p)):
        try:
            step()
        except (RuntimeError, OSError, KeyError, ValueError) as e:
            p.add(f"{type(e).__name__}: {e}")
    return p.exit(f"headroom inject and the kustomize component agree with the chart; "
                  f"their output validates (Kubernetes {versions.replace(',', ', ')}, strict)")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
