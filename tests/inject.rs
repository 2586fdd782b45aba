//! `headroom inject` end to end: the real binary on a multi-document
//! manifest with every workload kind (tests/fixtures/inject/every-kind.yaml),
//! the sidecar's shape against the chart's values and the kustomize
//! component, a second pass byte for byte, documents and fields it must
//! leave alone, `--container`, the native sidecar, standard input, and bad
//! input (exit 2, never a panic). The last test renders the chart with Helm,
//! validates the output against the Kubernetes 1.29 and 1.30 schemas and
//! runs kustomize (scripts/check_inject.py, in the venv that
//! `scripts/check-deploy.sh --tools-only` installs).

use headroom::inject::documents_as_json;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn every_kind() -> PathBuf {
    root().join("tests/fixtures/inject/every-kind.yaml")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `headroom ARGS` with `stdin` as its standard input.
fn headroom(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run headroom");
    let mut input = child.stdin.take().unwrap();
    // The binary may stop reading early (a bad flag): a broken pipe is fine.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().expect("headroom's output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `headroom inject ARGS` that must succeed: (stdout, stderr).
fn inject(args: &[&str], stdin: &str) -> (String, String) {
    let mut all = vec!["inject"];
    all.extend(args);
    let out = headroom(&all, stdin.as_bytes());
    assert!(
        out.status.success(),
        "headroom {all:?} failed ({}):\n{}",
        out.status,
        text(&out.stderr)
    );
    (text(&out.stdout), text(&out.stderr))
}

fn json(yaml: &str) -> Vec<Value> {
    documents_as_json(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// Where a kind keeps its pod spec.
fn pod_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" => Some(&["spec"]),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "ReplicationController" => {
            Some(&["spec", "template", "spec"])
        }
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
        _ => None,
    }
}

fn pod_spec_mut(obj: &mut Value) -> Option<&mut Value> {
    let path = pod_path(obj["kind"].as_str()?)?;
    Some(path.iter().fold(obj, |v, k| &mut v[*k]))
}

fn pod_spec(obj: &Value) -> &Value {
    let path = pod_path(obj["kind"].as_str().unwrap()).unwrap();
    path.iter().fold(obj, |v, k| &v[*k])
}

/// Objects, with a List's items in its place.
fn objects(docs: Vec<Value>) -> Vec<Value> {
    docs.into_iter()
        .flat_map(|d| {
            if d["kind"] == "List" {
                let mut list = d.clone();
                list["items"] = json!([]);
                let mut all = vec![list];
                all.extend(d["items"].as_array().cloned().unwrap_or_default());
                all
            } else {
                vec![d]
            }
        })
        .collect()
}

fn named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|c| c["name"] == name)
}

fn env<'a>(c: &'a Value, name: &str) -> &'a Value {
    named(&c["env"], name).unwrap_or(&Value::Null)
}

/// `after` less what inject adds; `before` tells what the pod had.
fn strip_injected(mut after: Value, before: &Value) -> Value {
    let Some(b) = pod_path(before["kind"].as_str().unwrap_or("")).map(|p| p.iter().fold(before, |v, k| &v[*k])) else {
        return after;
    };
    let a = pod_spec_mut(&mut after).unwrap();
    for key in ["containers", "initContainers", "volumes"] {
        if let Some(list) = a.get_mut(key).and_then(Value::as_array_mut) {
            list.retain(|c| c["name"] != "headroom" && c["name"] != "headroom-profiles");
            if list.is_empty() && b.get(key).is_none() {
                a.as_object_mut().unwrap().remove(key);
            }
        }
    }
    match b.get("shareProcessNamespace") {
        Some(v) => a["shareProcessNamespace"] = v.clone(),
        None => {
            a.as_object_mut().unwrap().remove("shareProcessNamespace");
        }
    }
    // The pod label of the chart's cluster install, and the metadata and
    // labels made for it.
    let path = pod_path(before["kind"].as_str().unwrap_or("")).unwrap();
    let meta_path = [&path[..path.len() - 1], &["metadata"][..]].concat();
    let had = meta_path.iter().fold(before, |v, k| &v[*k]).clone();
    let meta = meta_path.iter().fold(&mut after, |v, k| &mut v[*k]);
    assert_eq!(meta["labels"]["headroom.dev/sidecar"], "true", "the pod is labelled");
    if had.is_null() {
        *meta = Value::Null;
        let parent = path[..path.len() - 1].iter().fold(&mut after, |v, k| &mut v[*k]);
        parent.as_object_mut().unwrap().remove("metadata");
    } else if had.get("labels").is_none() {
        meta.as_object_mut().unwrap().remove("labels");
    } else {
        meta["labels"].as_object_mut().unwrap().remove("headroom.dev/sidecar");
    }
    after
}

/// The sidecar, wherever it is: (the container, in initContainers?).
fn sidecar(spec: &Value) -> (&Value, bool) {
    if let Some(c) = named(&spec["initContainers"], "headroom") {
        return (c, true);
    }
    (
        named(&spec["containers"], "headroom").expect("a headroom container"),
        false,
    )
}

#[test]
fn every_kind_gets_the_sidecar_and_nothing_else_changes() {
    let input = read(&every_kind());
    let (out, notes) = inject(&["--container", "app", every_kind().to_str().unwrap()], "");
    let (before, after) = (objects(json(&input)), objects(json(&out)));
    assert_eq!(before.len(), after.len(), "{out}");
    let mut kinds = Vec::new();
    for (b, a) in before.iter().zip(&after) {
        let who = format!(
            "{}/{}",
            b["kind"].as_str().unwrap(),
            b["metadata"]["name"].as_str().unwrap_or("-")
        );
        if pod_path(b["kind"].as_str().unwrap()).is_some() {
            kinds.push(b["kind"].as_str().unwrap().to_owned());
            let spec = pod_spec(a);
            let (c, native) = sidecar(spec);
            assert!(!native, "{who}");
            assert_eq!(spec["shareProcessNamespace"], json!(true), "{who}");
            assert_eq!(env(c, "CONTAINER_NAME")["value"], "app", "{who}");
            assert_eq!(
                env(c, "HEADROOM_MEMORY_LIMIT")["valueFrom"]["resourceFieldRef"]["containerName"],
                "app",
                "{who}"
            );
            assert_eq!(
                named(&spec["volumes"], "headroom-profiles"),
                Some(&json!({"name": "headroom-profiles", "emptyDir": {"sizeLimit": "288Mi"}})),
                "{who}"
            );
            // The Go container itself is untouched, and stays first.
            assert_eq!(spec["containers"][0], pod_spec(b)["containers"][0], "{who}");
        }
        assert_eq!(strip_injected(a.clone(), b), *b, "{who} changed besides the sidecar");
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "CronJob",
            "DaemonSet",
            "Deployment",
            "Deployment",
            "Job",
            "Pod",
            "ReplicaSet",
            "ReplicationController",
            "StatefulSet"
        ]
    );
    // The process from the image's name, or from the command; the Go
    // endpoint from the pod's annotation.
    let api = sidecar(pod_spec(&after[1])).0;
    assert_eq!(env(api, "HEADROOM_PROCESS")["value"], "api-server");
    assert_eq!(env(api, "HEADROOM_GO_URL")["value"], "http://127.0.0.1:6060/debug/vars");
    let store = sidecar(pod_spec(&after[2])).0;
    assert_eq!(env(store, "HEADROOM_PROCESS")["value"], "storesrv");
    assert_eq!(env(store, "HEADROOM_GO_URL"), &Value::Null);
    // Values that YAML 1.1 reads as numbers or booleans keep their text.
    assert!(
        out.contains("defaultMode: 0644") && out.contains("value: \"on\""),
        "{out}"
    );
    // Documents without a workload keep every byte, comments included.
    let configmap = &input[..input.find("---\n").unwrap()];
    assert!(out.starts_with(configmap), "{out}");
    let service = input.split("---\n").find(|d| d.contains("kind: Service")).unwrap();
    assert!(out.contains(&format!("---\n{service}---\n")), "{out}");
    // What was done, per workload; a Job's pod never ends with a regular sidecar.
    assert!(
        notes.contains("document 2 (Deployment/api, line 15): sidecar \"headroom\" added: watches container \"app\""),
        "{notes}"
    );
    assert!(notes.contains("shareProcessNamespace set to true"), "{notes}");
    assert!(
        notes.contains("(Job/migrate, line 121): warning:") && notes.contains("--native-sidecar"),
        "{notes}"
    );
}

#[test]
fn a_second_pass_is_byte_identical() {
    let input = read(&every_kind());
    for flags in [&["--container", "app"][..], &["--container", "app", "--native-sidecar"]] {
        let (once, _) = inject(flags, &input);
        assert_ne!(once, input);
        let (twice, notes) = inject(flags, &once);
        assert_eq!(twice, once, "{flags:?}");
        assert_eq!(
            notes.matches("already has a container named \"headroom\"").count(),
            9,
            "{notes}"
        );
    }
    // The plain example already has the sidecar.
    let example = read(&root().join("deploy/kubernetes/example-deployment.yaml"));
    assert_eq!(inject(&[], &example).0, example);
}

#[test]
fn the_native_sidecar_is_an_init_container_with_restart_policy_always() {
    let (out, notes) = inject(&["--container", "app", "--native-sidecar"], &read(&every_kind()));
    for obj in objects(json(&out)) {
        if pod_path(obj["kind"].as_str().unwrap()).is_none() {
            continue;
        }
        let spec = pod_spec(&obj);
        let (c, native) = sidecar(spec);
        assert!(native, "{}", obj["metadata"]["name"]);
        assert_eq!(c["restartPolicy"], "Always");
        assert!(named(&spec["containers"], "headroom").is_none());
    }
    assert!(!notes.contains("warning"), "{notes}");
}

#[test]
fn the_sidecar_is_the_charts_and_the_kustomize_components() {
    let values = json(&read(&root().join("helm/headroom/values.yaml"))).remove(0);
    let version = env!("CARGO_PKG_VERSION");
    let chart = read(&root().join("helm/headroom/Chart.yaml"));
    let tag = match values["image"]["tag"].as_str() {
        Some(t) if !t.is_empty() => t.to_owned(),
        // Empty: the chart's appVersion.
        _ => chart
            .lines()
            .find_map(|l| l.strip_prefix("appVersion:"))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .unwrap_or_default(),
    };
    assert_eq!(tag, version, "the chart's image tag is the crate's version");
    let app = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers:\n        - {name: app, image: app}\n";
    let (out, _) = inject(&["--readiness-probe"], app);
    let doc = json(&out).remove(0);
    let (c, _) = sidecar(pod_spec(&doc));
    assert_eq!(c["name"], values["containerName"]);
    assert_eq!(
        c["image"],
        format!("{}:{version}", values["image"]["repository"].as_str().unwrap())
    );
    assert_eq!(c["imagePullPolicy"], values["image"]["pullPolicy"]);
    assert_eq!(c["args"], json!(["run"]));
    assert_eq!(env(c, "HEADROOM_LIMIT_BASIS")["value"], values["limitBasis"]);
    assert_eq!(env(c, "HEADROOM_LOG_FORMAT")["value"], values["logFormat"]);
    assert_eq!(
        env(c, "HEADROOM_LISTEN")["value"],
        format!("0.0.0.0:{}", values["port"])
    );
    for e in values["env"].as_array().unwrap() {
        assert_eq!(env(c, e["name"].as_str().unwrap()), e);
    }
    assert_eq!(
        c["ports"],
        json!([{"name": "metrics", "containerPort": values["port"], "protocol": "TCP"}])
    );
    assert_eq!(c["livenessProbe"], values["livenessProbe"]);
    let mut readiness = values["readinessProbe"].clone();
    readiness.as_object_mut().unwrap().remove("enabled");
    assert_eq!(c["readinessProbe"], readiness);
    assert_eq!(c["resources"], values["resources"]);
    assert_eq!(values["procAccess"], "sameUser");
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["capabilities"], json!({"drop": ["ALL"]}));
    let volume = named(&pod_spec(&doc)["volumes"], "headroom-profiles").unwrap();
    assert_eq!(volume["emptyDir"]["sizeLimit"], values["profiles"]["sizeLimit"]);

    // The kustomize component's patch is the same pod, container for container.
    let (out, _) = inject(&[], app);
    let injected = json(&out).remove(0);
    let patch = json(&read(&root().join("deploy/kustomize/headroom-sidecar/sidecar.yaml"))).remove(0);
    let (got, want) = (pod_spec(&patch), pod_spec(&injected));
    assert_eq!(
        named(&got["containers"], "headroom"),
        named(&want["containers"], "headroom")
    );
    assert_eq!(got["volumes"], want["volumes"]);
    assert_eq!(got["shareProcessNamespace"], want["shareProcessNamespace"]);
}

#[test]
fn several_containers_and_no_container_flag_is_an_error_naming_them() {
    let out = headroom(&["inject", every_kind().to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "nothing is written on an error");
    let err = text(&out.stderr);
    assert!(
        err.contains("document 2 (Deployment/api, line 15): has 2 containers (\"app\", \"logs\"): say which one runs the Go service with --container NAME"),
        "{err}"
    );
    // --container names one that some workloads lack: each is named.
    let out = headroom(&["inject", "--container", "logs", every_kind().to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("(StatefulSet/store, line 55): has no container named \"logs\"; its containers: \"app\""),
        "{err}"
    );
    assert_eq!(err.matches("has no container named \"logs\"").count(), 8, "{err}");
    // On the api Deployment alone it watches the other container.
    let input = read(&every_kind());
    let api = input.split("---\n").nth(1).unwrap();
    let (out, _) = inject(&["--container", "logs"], api);
    let docs = json(&out);
    let (c, _) = sidecar(pod_spec(&docs[0]));
    assert_eq!(env(c, "HEADROOM_PROCESS")["value"], "fluent-bit");
    assert_eq!(env(c, "HEADROOM_TARGET_CONTAINER")["value"], "logs");
}

#[test]
fn standard_input_gives_the_same_output_as_the_file() {
    let input = read(&every_kind());
    let (from_file, _) = inject(&["--container", "app", every_kind().to_str().unwrap()], "");
    assert_eq!(inject(&["--container", "app"], &input).0, from_file);
    assert_eq!(inject(&["--container", "app", "-"], &input).0, from_file);
}

#[test]
fn bad_input_exits_2_with_an_error_that_names_the_document() {
    let cases: &[(&[u8], &str)] = &[
        (b"\xff\xfe\x00binary\x80", "standard input is not UTF-8 text (byte 0)"),
        (b"apiVersion: v1\nkind: Pod\n  metadata: [oops\n", "document 1 (line 1): not valid YAML"),
        (b"kind: Service\n---\n{ \"a\": \n", "document 2 (line 2): not valid YAML"),
        (
            b"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec: {}\n",
            "document 1 (Deployment/d, line 1): has no spec.template.spec.containers",
        ),
        (
            b"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      containers: app\n",
            "spec.template.spec.containers is the scalar \"app\", not a list of containers",
        ),
        (
            b"apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec: {jobTemplate: {spec: {template: {spec: {containers: {a: 1}}}}}}\n",
            "(CronJob/c, line 1): spec.jobTemplate.spec.template.spec.containers is a mapping, not a list",
        ),
        (
            b"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - image: x\n",
            "spec.containers[0] has no name",
        ),
    ];
    for (input, want) in cases {
        let out = headroom(&["inject"], input);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", text(input));
        assert!(out.stdout.is_empty(), "{}", text(input));
        assert!(err.contains(want), "{}: want {want:?} in:\n{err}", text(input));
    }
    let out = headroom(&["inject", "/nonexistent/manifest.yaml"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read /nonexistent/manifest.yaml"));
    // No documents: nothing to do.
    assert_eq!(inject(&[], "").0, "");
    assert_eq!(inject(&[], "# just a comment\n").0, "# just a comment\n");
    // Bad flags are usage errors.
    for args in [&["inject", "--proc-access", "root"][..], &["inject", "--nope"]] {
        assert_eq!(headroom(args, b"").status.code(), Some(64), "{args:?}");
    }
}

/// Random bytes and mangled manifests: exit 0 or 2, never a panic.
#[test]
fn random_input_never_crashes_the_binary() {
    let base = read(&every_kind()).into_bytes();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut ok, mut refused) = (0, 0);
    for i in 0..150 {
        let input: Vec<u8> = if i % 3 == 0 {
            (0..next() % 400).map(|_| next() as u8).collect()
        } else {
            let mut b = base.clone();
            for _ in 0..=next() % 6 {
                let at = next() as usize % b.len();
                let byte = b" \n-:[]{}'\"&*!|>#x0"[next() as usize % 18];
                if next() % 2 == 0 {
                    b[at] = byte;
                } else {
                    b.insert(at, byte);
                }
            }
            b
        };
        let out = headroom(&["inject", "--container", "app"], &input);
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{err}\ninput: {:?}", text(&input));
        match out.status.code() {
            Some(0) => ok += 1,
            Some(2) => {
                assert!(out.stdout.is_empty());
                assert!(err.contains("headroom inject: "), "{err}");
                refused += 1;
            }
            other => panic!("exit {other:?}: {err}\ninput: {:?}", text(&input)),
        }
    }
    assert!(ok > 0 && refused > 0, "{ok} accepted, {refused} refused");
}

/// The chart rendered by Helm, the Kubernetes 1.29 and 1.30 schemas and
/// kustomize: scripts/check_inject.py (also run by scripts/check-deploy.sh).
#[test]
fn helm_kubernetes_schemas_and_kustomize_agree() {
    let tools = Command::new(root().join("scripts/check-deploy.sh"))
        .arg("--tools-only")
        .current_dir(root())
        .output()
        .expect("run scripts/check-deploy.sh --tools-only");
    assert!(
        tools.status.success(),
        "scripts/check-deploy.sh --tools-only (Python 3 with venv, and pip access, are needed):\n{}{}",
        text(&tools.stdout),
        text(&tools.stderr)
    );
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(root().join("target/deploy-venv/bin/python"))
        .arg(root().join("scripts/check_inject.py"))
        .arg(work.path())
        .arg("1.29.0,1.30.0")
        .env("HEADROOM_BIN", env!("CARGO_BIN_EXE_headroom"))
        .current_dir(root())
        .output()
        .expect("run scripts/check_inject.py");
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "scripts/check_inject.py:\n{report}");
    for line in [
        "ok: default flags (profiles on): the sidecar, volumes and shareProcessNamespace are the chart's",
        "ok: --native-sidecar:",
        "ok: kustomize with the component: the same pod as headroom inject",
        "objects valid (Kubernetes 1.29.0, 1.30.0, strict)",
    ] {
        assert!(report.contains(line), "{line:?} missing from:\n{report}");
    }
}
