#!/usr/bin/env python3
"""Renders the Helm chart's example pod for `podman kube play` (tests/pod.rs).

Runs in the venv of scripts/check-deploy.sh (target/deploy-venv: PyYAML and
helm-python-sdk, Helm v4 as a library) and renders the chart with the same
code as the deploy checks (scripts/check_deploy.py `render`).

  kube.py render CHART VALUES_JSON OUT_YAML

VALUES_JSON is a JSON object of chart values plus one key of this script's,
`_podman` (removed before rendering):

  {"listen": "127.0.0.1:PORT",        the sidecar's address on the host network
   "app_args": ["-listen", ...],      the Go service's arguments
   "namespace": "headroom-check"}     the value POD_NAMESPACE gets

The chart's example Deployment is written out as it rendered, changed only
where podman 4.3 on the host network needs it (each change below says why):

- `ports` dropped from every container: `kube play --network host` refuses
  port mappings on the host network;
- probes dropped: podman runs an httpGet probe as `curl` inside the container
  from a systemd timer; the distroless images have no curl, and there is no
  systemd here, so a probe could only fail (the Kubernetes-side probes are
  checked by scripts/check-deploy.sh);
- POD_NAMESPACE set to a literal: podman's downward API has no
  metadata.namespace;
- a `resourceFieldRef` (HEADROOM_MEMORY_LIMIT) replaced by the named
  container's limit in bytes: podman resolves it against the container's own
  resources, whatever its `containerName` (Kubernetes honours it);
- HEADROOM_LISTEN set to a loopback address: on the host network the chart's
  0.0.0.0:PORT would listen on every interface of the machine;
- the app container gets `args`: the example's Go service is replaced by
  gohog (tests/go/gohog), which takes its leak rate and address as flags.

It prints the container names, one per line, as `NAME IMAGE`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from check_deploy import render  # noqa: E402  (after the path is set)


UNITS = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
         "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def quantity_bytes(q: str) -> int:
    """A Kubernetes memory quantity ("128Mi", "1G", "1048576") in bytes."""
    for suffix, factor in UNITS.items():
        if q.endswith(suffix):
            return int(float(q[: -len(suffix)]) * factor)
    return int(float(q))


def adapt(deployment: dict, podman: dict) -> dict:
    spec = deployment["spec"]["template"]["spec"]
    containers = spec.get("initContainers", []) + spec.get("containers", [])
    by_name = {c["name"]: c for c in containers}
    app_name = None
    for c in containers:
        c.pop("ports", None)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            c.pop(probe, None)
        for e in c.get("env", []):
            field = ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            if field == "metadata.namespace":
                e.pop("valueFrom")
                e["value"] = podman["namespace"]
            ref = (e.get("valueFrom") or {}).get("resourceFieldRef")
            if ref and ref.get("resource") == "limits.memory":
                target = by_name[ref["containerName"]]
                limit = ((target.get("resources") or {}).get("limits") or {}).get("memory")
                if limit is None:
                    raise SystemExit(f"container {ref['containerName']!r} has no memory limit")
                e.pop("valueFrom")
                e["value"] = str(quantity_bytes(str(limit)))
            if e["name"] == "HEADROOM_LISTEN":
                e["value"] = podman["listen"]
            if e["name"] == "CONTAINER_NAME":
                app_name = e.get("value")
    for c in spec.get("containers", []):
        if c["name"] == app_name:
            c["args"] = [str(a) for a in podman["app_args"]]
            break
    else:
        raise SystemExit(f"no app container named {app_name!r} in the example pod")
    return deployment


def cmd_render(chart: str, values_json: str, out: str) -> int:
    values = json.loads(values_json)
    podman = values.pop("_podman")
    text = render(chart, values)
    docs = [d for d in yaml.safe_load_all(text) if d]
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    if len(deployments) != 1:
        print(f"expected the example's one Deployment, got {[d.get('kind') for d in docs]}")
        return 1
    deployment = adapt(deployments[0], podman)
    Path(out).write_text(yaml.safe_dump(deployment, sort_keys=False), encoding="utf-8")
    spec = deployment["spec"]["template"]["spec"]
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        print(c["name"], c["image"])
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 5 or argv[1] != "render":
        print(__doc__)
        return 2
    return cmd_render(argv[2], argv[3], argv[4])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
