//! `headroom inject`: Kubernetes YAML in, the same YAML with the headroom
//! sidecar added to each workload's pod template out, as `linkerd inject`
//! does. [`inject`] is the pure function; [`command`],
//! [`InjectCommand::from_matches`] and [`run`] are the command line around it.
//!
//! The sidecar is the Helm chart's (`headroom.container` in
//! `helm/headroom/templates/_helpers.tpl`, with the chart's default values):
//! the same image, args, env, port, probes, resources and securityContext.
//! `tests/inject.rs` checks it against the chart's values and
//! `scripts/check_inject.py` against the chart rendered by Helm, so the two
//! cannot drift apart.
//!
//! The YAML library is `saphyr-parser`, the event parser of the saphyr
//! project: pure safe Rust, YAML 1.2, maintained (the successor of
//! yaml-rust and yaml-rust2), and it passes the YAML test suite. The
//! serde-based crates were ruled out: `serde_yaml` is archived, `serde_yml`
//! is archived and unsound (RUSTSEC-2025-0068), and `serde_norway` (a
//! serde_yaml fork) and saphyr's own document model type every scalar by
//! YAML 1.2 rules before writing it back, which changes what Kubernetes (a
//! YAML 1.1 reader) reads: `defaultMode: 0644` comes back as the string
//! `'0644'`, and a quoted `"yes"` as a plain `yes`, a boolean to Kubernetes.
//! So this module builds a small tree of its own from the parser's events,
//! keeping each scalar as it was written (its text, quoting and tag), and
//! writes that tree back itself. A document that gets the sidecar keeps its
//! values and the order of its keys, and the comments above it; its other
//! comments are lost, and its aliases are written out in full. A document
//! that needs no change is copied byte for byte.

use crate::sample::LimitBasis;
use clap::{Arg, ArgAction, ArgMatches};
use saphyr_parser::{Event, Parser, ScalarStyle, Tag};
use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::PathBuf;

/// The sidecar container's name (the chart's `containerName`).
pub const SIDECAR: &str = "headroom";
/// The port headroom serves on, named `metrics` (the chart's `port`).
pub const METRICS_PORT: u16 = 9184;
/// The heap profiles' emptyDir volume (the chart's `profiles`).
pub const PROFILE_VOLUME: &str = "headroom-profiles";
/// Where the profile volume is mounted: `--profile-dir`.
pub const PROFILE_DIR: &str = "/var/lib/headroom/profiles";
/// The profile volume's `sizeLimit` (the chart's `profiles.sizeLimit`).
pub const PROFILE_SIZE_LIMIT: &str = "288Mi";
/// Exit status when the input cannot be injected: not YAML, or a workload
/// without a container to watch. Bad flags exit 64, as everywhere.
pub const EXIT_BAD_INPUT: u8 = 2;
/// The pod annotation that names the Go endpoint (as for `headroom node`).
pub const GO_URL_ANNOTATION: &str = "headroom.dev/go-url";

/// The image of a sidecar that `--image` does not name: this build's.
pub fn default_image() -> String {
    format!("headroom:{}", env!("CARGO_PKG_VERSION"))
}

/// How headroom gets read access to the Go process's `/proc/PID` files
/// (the chart's `procAccess`; docs/deploying.md#permissions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcAccess {
    /// The Go service's UID and GID, no capability.
    #[default]
    SameUser,
    /// Root with `CAP_SYS_PTRACE` alone.
    SysPtrace,
}

impl ProcAccess {
    fn parse(s: &str) -> Option<ProcAccess> {
        match s {
            "same-user" | "sameUser" => Some(ProcAccess::SameUser),
            "sys-ptrace" | "sysPtrace" => Some(ProcAccess::SysPtrace),
            _ => None,
        }
    }
}

/// What to inject, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectOptions {
    /// The container to watch; `None`: the pod's only container.
    pub container: Option<String>,
    /// The Go process's name; `None`: from the container's command or image.
    pub process: Option<String>,
    /// The Go endpoint; `None`: the pod's `headroom.dev/go-url` annotation.
    pub go_url: Option<String>,
    pub image: String,
    /// An init container with `restartPolicy: Always` (Kubernetes 1.29+).
    pub native_sidecar: bool,
    pub proc_access: ProcAccess,
    pub limit_basis: LimitBasis,
    /// Heap profiles on an emptyDir (`--profile-dir`).
    pub profiles: bool,
    /// A readiness probe on `/readyz` (off, as in the chart: a monitoring
    /// sidecar must not take the service out of its endpoints).
    pub readiness_probe: bool,
}

impl Default for InjectOptions {
    fn default() -> Self {
        InjectOptions {
            container: None,
            process: None,
            go_url: None,
            image: default_image(),
            native_sidecar: false,
            proc_access: ProcAccess::SameUser,
            limit_basis: LimitBasis::Unreclaimable,
            profiles: true,
            readiness_probe: false,
        }
    }
}

// --- errors and notes ----------------------------------------------------------

/// Where in the input: the document (counted from 1), the line it starts
/// on, and the object once known (`Deployment/web`, `List/all item 2: Pod/x`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub document: usize,
    pub line: usize,
    pub object: Option<String>,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.object {
            Some(o) => write!(f, "document {} ({o}, line {})", self.document, self.line),
            None => write!(f, "document {} (line {})", self.document, self.line),
        }
    }
}

impl Place {
    fn named(&self, object: String) -> Place {
        Place {
            object: Some(match &self.object {
                Some(outer) => format!("{outer} {object}"),
                None => object,
            }),
            ..self.clone()
        }
    }
}

/// One thing in the input that stops the injection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub place: Place,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// Why the input was not injected: every problem found, each naming its
/// document and object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n"))]
pub struct InjectError {
    pub problems: Vec<Problem>,
}

/// The output, and what was done to each workload (for standard error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub output: String,
    pub notes: Vec<String>,
}

#[derive(Default)]
struct Log {
    notes: Vec<String>,
    problems: Vec<Problem>,
}

impl Log {
    fn note(&mut self, place: &Place, message: impl fmt::Display) {
        self.notes.push(format!("{place}: {message}"));
    }

    fn problem(&mut self, place: &Place, message: impl Into<String>) {
        self.problems.push(Problem {
            place: place.clone(),
            message: message.into(),
        });
    }
}

// --- the pure function -----------------------------------------------------------

/// Adds the sidecar to every workload of `input` (a stream of YAML
/// documents) and returns the stream; documents that need no change are
/// copied byte for byte, so injecting twice gives the same bytes.
pub fn inject(input: &str, opts: &InjectOptions) -> Result<String, InjectError> {
    inject_with_notes(input, opts).map(|i| i.output)
}

/// [`inject`], with a note per workload on what was done.
pub fn inject_with_notes(input: &str, opts: &InjectOptions) -> Result<Injected, InjectError> {
    let mut output = String::with_capacity(input.len() + 4096);
    let mut log = Log::default();
    let mut document = 0;
    for chunk in split_documents(input) {
        let docs = match parse_stream(chunk.text) {
            Ok(docs) => docs,
            Err(e) => {
                document += 1;
                let line = chunk.first_line + e.line.saturating_sub(1);
                let place = Place {
                    document,
                    line: chunk.first_line,
                    object: None,
                };
                log.problem(
                    &place,
                    format!(
                        "not valid YAML: {} (line {line}, column {}); fix the document or leave it out",
                        e.message,
                        e.col + 1
                    ),
                );
                continue;
            }
        };
        let mut changed = false;
        let mut rewritten = Vec::new();
        for mut doc in docs {
            document += 1;
            let place = Place {
                document,
                line: chunk.first_line + doc.line.saturating_sub(1),
                object: None,
            };
            if inject_document(&mut doc.node, opts, &place, &mut log) {
                changed = true;
            }
            rewritten.push((place, doc.node));
        }
        if !changed {
            output.push_str(chunk.text);
            continue;
        }
        let (header, marked) = leading_lines(chunk.text);
        output.push_str(&header);
        for (i, (place, node)) in rewritten.iter().enumerate() {
            match emit_document(node) {
                Ok(text) => {
                    // Each document after the first starts with a marker, and
                    // so does an empty one (else it would not be a document).
                    if i > 0 || (!marked && text.is_empty()) {
                        output.push_str("---\n");
                    }
                    output.push_str(&text);
                }
                Err(message) => log.problem(place, message),
            }
        }
    }
    if log.problems.is_empty() {
        Ok(Injected {
            output,
            notes: log.notes,
        })
    } else {
        Err(InjectError { problems: log.problems })
    }
}

/// One document (or, rarely, several separated by `...` alone) of the
/// input, as written.
struct Chunk<'a> {
    text: &'a str,
    first_line: usize,
}

/// A line that starts with `---` followed by a blank or its end begins a
/// document: YAML forbids such a line inside any node, so the stream can be
/// cut there without parsing it.
fn is_document_start(line: &str) -> bool {
    let line = line.trim_end_matches(['\n', '\r']);
    line.starts_with("---") && matches!(line.as_bytes().get(3), None | Some(b' ' | b'\t'))
}

/// The lines of `text`, each with its line break: `\n`, `\r\n`, or a lone
/// `\r`, which YAML reads as a line break too.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = match rest.find(['\n', '\r']) {
            None => rest.len(),
            Some(i) if rest[i..].starts_with("\r\n") => i + 2,
            Some(i) => i + 1,
        };
        let (line, tail) = rest.split_at(end);
        rest = tail;
        Some(line)
    })
}

fn split_documents(input: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let (mut start, mut start_line, mut pos, mut line_no) = (0, 1, 0, 1);
    for line in lines(input) {
        if pos > start && is_document_start(line) {
            chunks.push(Chunk {
                text: &input[start..pos],
                first_line: start_line,
            });
            start = pos;
            start_line = line_no;
        }
        pos += line.len();
        line_no += 1;
    }
    if start < input.len() || chunks.is_empty() {
        chunks.push(Chunk {
            text: &input[start..],
            first_line: start_line,
        });
    }
    chunks
}

/// The lines of a rewritten document that are kept as they were: the
/// comments and blank lines above it, and its `---` line (the content
/// after a `---` goes to the next line); and whether there was a `---`.
fn leading_lines(text: &str) -> (String, bool) {
    let mut kept = String::new();
    let mut marked = false;
    for line in lines(text) {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('%') {
            kept.push_str(line);
        } else if is_document_start(line) && !marked {
            marked = true;
            let rest = line[3..].trim();
            if rest.is_empty() || rest.starts_with('#') {
                kept.push_str(line.trim_end_matches(['\n', '\r']));
                kept.push('\n');
            } else {
                kept.push_str("---\n");
                break;
            }
        } else {
            break;
        }
    }
    if !kept.is_empty() && !kept.ends_with(['\n', '\r']) {
        kept.push('\n');
    }
    (kept, marked)
}

/// Injects one document: an object or a `kind: List` of them. Anything
/// else passes through.
fn inject_document(doc: &mut Node, opts: &InjectOptions, place: &Place, log: &mut Log) -> bool {
    if !matches!(doc, Node::Map(..)) {
        return false;
    }
    if doc.get("kind").and_then(Node::as_str) != Some("List") {
        return inject_object(doc, opts, place, log);
    }
    let list = match object_name(doc).as_str() {
        "(no name)" => place.named("List".into()),
        name => place.named(format!("List/{name}")),
    };
    match doc.get_mut("items") {
        Some(Node::Seq(items, _)) => {
            let mut changed = false;
            for (i, item) in items.iter_mut().enumerate() {
                let place = list.named(format!("item {}:", i + 1));
                changed |= inject_object(item, opts, &place, log);
            }
            changed
        }
        None | Some(Node::Scalar(_)) => false,
        Some(other) => {
            log.problem(&list, format!("items is {}, not a list of objects", other.describe()));
            false
        }
    }
}

fn object_name(obj: &Node) -> String {
    obj.get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .unwrap_or("(no name)")
        .to_owned()
}

/// Where the pod spec of a workload is, for the kinds (and API groups)
/// that have one.
fn pod_spec_path(kind: &str, api_version: &str) -> Option<&'static [&'static str]> {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    match (kind, group) {
        ("Pod", "") => Some(&["spec"]),
        ("ReplicationController", "") => Some(&["spec", "template", "spec"]),
        ("Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet", "apps" | "extensions") => {
            Some(&["spec", "template", "spec"])
        }
        ("Job", "batch") => Some(&["spec", "template", "spec"]),
        ("CronJob", "batch") => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
        _ => None,
    }
}

fn inject_object(obj: &mut Node, opts: &InjectOptions, place: &Place, log: &mut Log) -> bool {
    if !matches!(obj, Node::Map(..)) {
        return false;
    }
    let kind = obj.get("kind").and_then(Node::as_str).unwrap_or_default().to_owned();
    let api = obj.get("apiVersion").and_then(Node::as_str).unwrap_or_default();
    let named = place.named(format!("{kind}/{}", object_name(obj)));
    let Some(path) = pod_spec_path(&kind, api) else {
        if pod_spec_path(&kind, "apps/v1")
            .or(pod_spec_path(&kind, "v1"))
            .or(pod_spec_path(&kind, "batch/v1"))
            .is_some()
        {
            log.note(
                &named,
                format!("apiVersion {api:?} is not a {kind}'s that inject knows: left as it is"),
            );
        }
        return false;
    };
    let place = named;
    // The pod template's metadata: the pod's annotations.
    let mut meta_path = path[..path.len() - 1].to_vec();
    meta_path.push("metadata");
    let annotations: Vec<(String, String)> = walk(obj, &meta_path)
        .and_then(|m| m.get("annotations"))
        .map(|a| a.string_entries())
        .unwrap_or_default();
    let spec_path = path.join(".");
    let spec = match walk_mut(obj, path) {
        Ok(spec) => spec,
        Err(message) => {
            log.problem(&place, message);
            return false;
        }
    };
    let workload = Workload {
        kind: &kind,
        spec_path: &spec_path,
        annotations: &annotations,
    };
    match inject_pod(spec, &workload, opts) {
        Ok(notes) => {
            let changed = notes.changed;
            for n in notes.lines {
                log.note(&place, n);
            }
            if changed {
                label_pod(obj, &path[..path.len() - 1]);
            }
            changed
        }
        Err(message) => {
            log.problem(&place, message);
            false
        }
    }
}

fn walk<'a>(mut node: &'a Node, path: &[&str]) -> Option<&'a Node> {
    for key in path {
        node = node.get(key)?;
    }
    Some(node)
}

/// The pod label by which the chart's cluster install finds every sidecar.
pub const SIDECAR_LABEL: &str = "headroom.dev/sidecar";

/// Labels the pod template at `template` (its metadata made where missing)
/// with [`SIDECAR_LABEL`].
fn label_pod(obj: &mut Node, template: &[&str]) {
    let Ok(t) = walk_mut(obj, template) else {
        return;
    };
    if t.get("metadata").is_none() {
        t.insert_before("metadata", Node::map(Vec::new()), "spec");
    }
    let Some(meta @ Node::Map(..)) = t.get_mut("metadata") else {
        return;
    };
    if meta.get("labels").is_none() {
        meta.set("labels", Node::map(Vec::new()));
    }
    if let Some(labels @ Node::Map(..)) = meta.get_mut("labels") {
        labels.set(SIDECAR_LABEL, Node::str("true"));
    }
}

fn walk_mut<'a>(mut node: &'a mut Node, path: &[&str]) -> Result<&'a mut Node, String> {
    for (i, key) in path.iter().enumerate() {
        let at = path[..=i].join(".");
        node = match node.get_mut(key) {
            Some(n @ Node::Map(..)) => n,
            Some(other) => return Err(format!("{at} is {}, not a mapping", other.describe())),
            None => {
                return Err(format!(
                    "has no {at}, so no pod spec at {}: is the object complete?",
                    path.join(".")
                ))
            }
        };
    }
    Ok(node)
}

struct Workload<'a> {
    kind: &'a str,
    spec_path: &'a str,
    annotations: &'a [(String, String)],
}

struct PodNotes {
    changed: bool,
    lines: Vec<String>,
}

/// The names of a list of containers; every item must be a mapping with a
/// name.
fn container_names(list: &Node, at: &str) -> Result<Vec<String>, String> {
    let Node::Seq(items, _) = list else {
        return Err(format!("{at} is {}, not a list of containers", list.describe()));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, c)| match c {
            Node::Map(..) => c
                .get("name")
                .and_then(Node::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("{at}[{i}] has no name")),
            other => Err(format!("{at}[{i}] is {}, not a container", other.describe())),
        })
        .collect()
}

fn quoted_list(names: &[String]) -> String {
    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

/// Programs that start another one: the Go binary is not their name.
const LAUNCHERS: &[&str] = &["sh", "bash", "ash", "dash", "busybox", "env", "tini", "dumb-init"];

/// The Go process's name as the container runs it: its command's file
/// name, else its image's name; and where the name came from.
fn process_name(container: &Node) -> Option<(String, &'static str)> {
    let command = container.get("command").and_then(|c| match c {
        Node::Seq(items, _) => items.first().and_then(Node::as_str),
        _ => None,
    });
    if let Some(base) = command.and_then(|c| c.rsplit('/').next()) {
        if !base.is_empty() && !LAUNCHERS.contains(&base) {
            return Some((base.to_owned(), "the file name of its command"));
        }
    }
    let image = container.get("image").and_then(Node::as_str)?;
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    let name = last.split(':').next().unwrap_or(last);
    (!name.is_empty()).then(|| (name.to_owned(), "its image's name"))
}

/// The target container's `runAsUser`/`runAsGroup` when it sets its own
/// (a positive number): the sidecar runs as the same (`sameUser`).
fn own_ids(container: &Node) -> Vec<(&'static str, Node)> {
    let Some(sc) = container.get("securityContext") else {
        return Vec::new();
    };
    ["runAsUser", "runAsGroup"]
        .into_iter()
        .filter_map(|k| {
            let v = sc.get(k)?;
            let n: u64 = v.as_str()?.parse().ok()?;
            (n > 0).then(|| (k, v.clone()))
        })
        .collect()
}

/// A pod's or container's `securityContext.runAsUser`, as written.
fn run_as_user(n: &Node) -> Option<&str> {
    n.get("securityContext")
        .and_then(|sc| sc.get("runAsUser"))
        .and_then(Node::as_str)
}

fn is_true(node: Option<&Node>) -> bool {
    matches!(node, Some(Node::Scalar(s)) if s.style == ScalarStyle::Plain
        && matches!(s.value.as_str(), "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y"))
}

fn inject_pod(spec: &mut Node, w: &Workload, opts: &InjectOptions) -> Result<PodNotes, String> {
    let at = |field: &str| format!("{}.{field}", w.spec_path);
    let names = match spec.get("containers") {
        None => {
            return Err(format!(
                "has no {}: a pod needs a container for headroom to watch",
                at("containers")
            ))
        }
        Some(list) => container_names(list, &at("containers"))?,
    };
    if names.is_empty() {
        return Err(format!("{} is empty: there is no container to watch", at("containers")));
    }
    let init_names = match spec.get("initContainers") {
        None => Vec::new(),
        Some(list) => container_names(list, &at("initContainers"))?,
    };
    if let Some(v) = spec.get("volumes") {
        if !matches!(v, Node::Seq(..)) && opts.profiles {
            return Err(format!("{} is {}, not a list of volumes", at("volumes"), v.describe()));
        }
    }
    if names.iter().chain(&init_names).any(|n| n == SIDECAR) {
        return Ok(PodNotes {
            changed: false,
            lines: vec![format!(
                "already has a container named {SIDECAR:?}: left as it is (remove it to inject again)"
            )],
        });
    }
    let target = match &opts.container {
        Some(c) if names.contains(c) => c.clone(),
        Some(c) if init_names.contains(c) => {
            return Err(format!(
                "{c:?} is an init container; --container names one of the pod's containers: {}",
                quoted_list(&names)
            ))
        }
        Some(c) => {
            return Err(format!(
                "has no container named {c:?}; its containers: {}. Name one of them with --container, \
                 or inject this document on its own",
                quoted_list(&names)
            ))
        }
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(format!(
                "has {} containers ({}): say which one runs the Go service with --container NAME",
                names.len(),
                quoted_list(&names)
            ))
        }
    };
    let container = match spec.get("containers") {
        Some(Node::Seq(items, _)) => items
            .iter()
            .find(|c| c.get("name").and_then(Node::as_str) == Some(target.as_str()))
            .cloned()
            .unwrap_or_else(|| Node::map(Vec::new())),
        _ => Node::map(Vec::new()),
    };
    let (process, source) = match &opts.process {
        Some(p) => (p.clone(), "--process"),
        None => process_name(&container).ok_or_else(|| {
            format!("cannot tell the name of container {target:?}'s Go process (it names no image): give it with --process NAME")
        })?,
    };
    let go_url = opts.go_url.clone().or_else(|| {
        let own = format!("{GO_URL_ANNOTATION}.{target}");
        let find = |key: &str| w.annotations.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        find(&own).or_else(|| find(GO_URL_ANNOTATION))
    });
    let mut lines = vec![format!(
        "sidecar {SIDECAR:?} added{}: watches container {target:?}, process {process:?} (from {source}){}",
        if opts.native_sidecar {
            " as a native sidecar"
        } else {
            ""
        },
        match &go_url {
            Some(u) => format!(", Go endpoint {u}"),
            None => ", no Go endpoint (--go-url or the pod annotation headroom.dev/go-url)".to_owned(),
        }
    )];
    let mut ids = Vec::new();
    if opts.proc_access == ProcAccess::SameUser {
        ids = own_ids(&container);
        if run_as_user(&container).or_else(|| run_as_user(spec)) == Some("0") {
            lines.push(format!(
                "warning: container {target:?} runs as root, which headroom cannot read as a non-root user: \
                 use --proc-access sys-ptrace"
            ));
        }
    }
    let sidecar = sidecar_container(
        &Target {
            container: &target,
            process: &process,
            go_url: go_url.as_deref(),
            ids,
        },
        opts,
    );

    if opts.native_sidecar {
        match spec.get_mut("initContainers") {
            Some(Node::Seq(items, _)) => items.push(sidecar),
            _ => spec.insert_before("initContainers", Node::seq(vec![sidecar]), "containers"),
        }
    } else if let Some(Node::Seq(items, _)) = spec.get_mut("containers") {
        items.push(sidecar);
    }
    if !is_true(spec.get("shareProcessNamespace")) {
        if spec.get("shareProcessNamespace").is_some() {
            lines.push(
                "shareProcessNamespace set to true: headroom finds the Go process in the pod's PID namespace".into(),
            );
        }
        spec.set("shareProcessNamespace", Node::raw("true"));
    }
    if opts.profiles {
        let volume = Node::map(vec![
            ("name", Node::str(PROFILE_VOLUME)),
            (
                "emptyDir",
                Node::map(vec![("sizeLimit", Node::str(PROFILE_SIZE_LIMIT))]),
            ),
        ]);
        match spec.get_mut("volumes") {
            Some(Node::Seq(items, _)) => {
                if !items
                    .iter()
                    .any(|v| v.get("name").and_then(Node::as_str) == Some(PROFILE_VOLUME))
                {
                    items.push(volume);
                }
            }
            _ => spec.set("volumes", Node::seq(vec![volume])),
        }
    }
    let restart = spec.get("restartPolicy").and_then(Node::as_str).unwrap_or("Always");
    let ends = matches!(w.kind, "Job" | "CronJob") || (w.kind == "Pod" && restart != "Always");
    if ends && !opts.native_sidecar {
        lines.push(format!(
            "warning: a {}'s pod ends when all its containers have ended, and headroom does not end: \
             use --native-sidecar (Kubernetes 1.29 and later)",
            w.kind
        ));
    }
    Ok(PodNotes { changed: true, lines })
}

struct Target<'a> {
    container: &'a str,
    process: &'a str,
    go_url: Option<&'a str>,
    /// The target's own `runAsUser`/`runAsGroup`, for `sameUser`.
    ids: Vec<(&'static str, Node)>,
}

fn env_value(name: &str, value: &str) -> Node {
    Node::map(vec![("name", Node::str(name)), ("value", Node::str(value))])
}

fn env_from(name: &str, source: Node) -> Node {
    Node::map(vec![("name", Node::str(name)), ("valueFrom", source)])
}

fn probe(path: &str, period: &str) -> Node {
    Node::map(vec![
        (
            "httpGet",
            Node::map(vec![("path", Node::str(path)), ("port", Node::str("metrics"))]),
        ),
        ("periodSeconds", Node::raw(period)),
        ("timeoutSeconds", Node::raw("2")),
        ("failureThreshold", Node::raw("3")),
    ])
}

/// The chart's `headroom.container` with its default values.
fn sidecar_container(t: &Target, opts: &InjectOptions) -> Node {
    let mut c = vec![
        ("name", Node::str(SIDECAR)),
        ("image", Node::str(&opts.image)),
        ("imagePullPolicy", Node::str("IfNotPresent")),
    ];
    if opts.native_sidecar {
        c.push(("restartPolicy", Node::str("Always")));
    }
    c.push(("args", Node::seq(vec![Node::str("run")])));
    let field = |path: &str| Node::map(vec![("fieldRef", Node::map(vec![("fieldPath", Node::str(path))]))]);
    let mut env = vec![env_value("HEADROOM_PROCESS", t.process)];
    if let Some(url) = t.go_url {
        env.push(env_value("HEADROOM_GO_URL", url));
    }
    env.push(env_value("HEADROOM_LIMIT_BASIS", opts.limit_basis.as_str()));
    env.push(env_from(
        "HEADROOM_MEMORY_LIMIT",
        Node::map(vec![(
            "resourceFieldRef",
            Node::map(vec![
                ("containerName", Node::str(t.container)),
                ("resource", Node::str("limits.memory")),
            ]),
        )]),
    ));
    env.push(env_value("HEADROOM_LISTEN", &format!("0.0.0.0:{METRICS_PORT}")));
    env.push(env_value("HEADROOM_LOG_FORMAT", "json"));
    if opts.profiles {
        env.push(env_value("HEADROOM_PROFILE_DIR", PROFILE_DIR));
    }
    env.push(env_from("POD_NAME", field("metadata.name")));
    env.push(env_from("POD_NAMESPACE", field("metadata.namespace")));
    env.push(env_value("CONTAINER_NAME", t.container));
    env.push(env_value("HEADROOM_TARGET_CONTAINER", t.container));
    env.push(env_value("RUST_LOG", "info"));
    c.push(("env", Node::seq(env)));
    c.push((
        "ports",
        Node::seq(vec![Node::map(vec![
            ("name", Node::str("metrics")),
            ("containerPort", Node::raw(&METRICS_PORT.to_string())),
            ("protocol", Node::str("TCP")),
        ])]),
    ));
    c.push(("livenessProbe", probe("/healthz", "10")));
    if opts.readiness_probe {
        c.push(("readinessProbe", probe("/readyz", "5")));
    }
    let quantities = |cpu: &str, memory: &str| Node::map(vec![("cpu", Node::str(cpu)), ("memory", Node::str(memory))]);
    c.push((
        "resources",
        Node::map(vec![
            ("requests", quantities("10m", "16Mi")),
            ("limits", quantities("100m", "32Mi")),
        ]),
    ));
    let mut sc = Vec::new();
    let ptrace = opts.proc_access == ProcAccess::SysPtrace;
    if ptrace {
        sc.push(("runAsUser", Node::raw("0")));
        sc.push(("runAsNonRoot", Node::raw("false")));
    } else {
        sc.push(("runAsNonRoot", Node::raw("true")));
        sc.extend(t.ids.iter().cloned());
    }
    sc.push(("allowPrivilegeEscalation", Node::raw("false")));
    sc.push(("privileged", Node::raw("false")));
    sc.push(("readOnlyRootFilesystem", Node::raw("true")));
    let mut caps = vec![("drop", Node::seq(vec![Node::str("ALL")]))];
    if ptrace {
        caps.push(("add", Node::seq(vec![Node::str("SYS_PTRACE")])));
    }
    sc.push(("capabilities", Node::map(caps)));
    sc.push(("seccompProfile", Node::map(vec![("type", Node::str("RuntimeDefault"))])));
    c.push(("securityContext", Node::map(sc)));
    if opts.profiles {
        c.push((
            "volumeMounts",
            Node::seq(vec![Node::map(vec![
                ("name", Node::str(PROFILE_VOLUME)),
                ("mountPath", Node::str(PROFILE_DIR)),
            ])]),
        ));
    }
    Node::map(c)
}

// --- the YAML tree -----------------------------------------------------------------

/// A scalar as written: its value (after unquoting or folding), its style
/// and its tag.
#[derive(Debug, Clone, PartialEq)]
struct Scalar {
    value: String,
    style: ScalarStyle,
    tag: Option<Tag>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Scalar(Scalar),
    Seq(Vec<Node>, Option<Tag>),
    Map(Vec<(Node, Node)>, Option<Tag>),
}

impl Node {
    /// A string of ours, quoted unless plain is unambiguous to every YAML
    /// reader (YAML 1.1's `yes`, `on` and `0644` included).
    fn str(value: &str) -> Node {
        let style = if plain_is_string(value) {
            ScalarStyle::Plain
        } else {
            ScalarStyle::DoubleQuoted
        };
        Node::Scalar(Scalar {
            value: value.to_owned(),
            style,
            tag: None,
        })
    }

    /// A plain scalar written as it is: a number or a boolean.
    fn raw(value: &str) -> Node {
        Node::Scalar(Scalar {
            value: value.to_owned(),
            style: ScalarStyle::Plain,
            tag: None,
        })
    }

    fn map(entries: Vec<(&str, Node)>) -> Node {
        Node::Map(entries.into_iter().map(|(k, v)| (Node::str(k), v)).collect(), None)
    }

    fn seq(items: Vec<Node>) -> Node {
        Node::Seq(items, None)
    }

    /// A scalar's value, however it was quoted.
    fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar(s) => Some(&s.value),
            _ => None,
        }
    }

    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries, _) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match self {
            Node::Map(entries, _) => entries
                .iter_mut()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Sets `key` in a mapping: its value replaced where it is, else added
    /// at the end.
    fn set(&mut self, key: &str, value: Node) {
        if let Some(v) = self.get_mut(key) {
            *v = value;
        } else if let Node::Map(entries, _) = self {
            entries.push((Node::str(key), value));
        }
    }

    /// Adds `key` to a mapping just before `before` (at the end without it).
    fn insert_before(&mut self, key: &str, value: Node, before: &str) {
        if let Node::Map(entries, _) = self {
            let at = entries
                .iter()
                .position(|(k, _)| k.as_str() == Some(before))
                .unwrap_or(entries.len());
            entries.insert(at, (Node::str(key), value));
        }
    }

    /// A mapping's entries whose key and value are both scalars.
    fn string_entries(&self) -> Vec<(String, String)> {
        match self {
            Node::Map(entries, _) => entries
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// What the node is, for messages: "a list", "a mapping", "the scalar \"x\"".
    fn describe(&self) -> String {
        match self {
            Node::Scalar(s) if s.style == ScalarStyle::Plain && matches!(s.value.as_str(), "" | "~" | "null") => {
                "null".into()
            }
            Node::Scalar(s) => {
                let short: String = s.value.chars().take(40).collect();
                format!("the scalar {short:?}")
            }
            Node::Seq(..) => "a list".into(),
            Node::Map(..) => "a mapping".into(),
        }
    }

    fn size(&self) -> usize {
        match self {
            Node::Scalar(_) => 1,
            Node::Seq(items, _) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Node::Map(entries, _) => 1 + entries.iter().map(|(k, v)| k.size() + v.size()).sum::<usize>(),
        }
    }
}

/// Whether `s` reads back as this string, plain, under YAML 1.1 and 1.2:
/// letters, digits and `._/-` only, starting with a letter or `/` (or
/// digits then letters, like `16Mi`), and not a YAML 1.1 boolean or null.
fn plain_is_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "Y", "N", "Yes", "No", "On", "Off", "True",
        "False", "Null", "YES", "NO", "ON", "OFF", "TRUE", "FALSE", "NULL",
    ];
    let Some(first) = s.chars().next() else {
        return false;
    };
    let charset = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'));
    let leading = if first.is_ascii_digit() {
        let letters = s.trim_start_matches(|c: char| c.is_ascii_digit());
        !letters.is_empty() && letters.chars().all(|c| c.is_ascii_alphabetic())
    } else {
        first.is_ascii_alphabetic() || first == '/'
    };
    charset && leading && !WORDS.contains(&s)
}

// --- reading: events to the tree ------------------------------------------------

/// Deeper nesting is refused, so that no walk over the tree can overflow
/// the stack. Kubernetes objects nest about 15 deep.
const MAX_DEPTH: usize = 200;
/// At most this many nodes may be made by expanding aliases (a
/// "billion laughs" document is refused).
const MAX_ALIAS_NODES: usize = 100_000;

#[derive(Debug)]
struct ParseError {
    line: usize,
    col: usize,
    message: String,
}

struct ParsedDoc {
    node: Node,
    /// The line (of the chunk) the document starts on.
    line: usize,
}

enum Open {
    Seq(Vec<Node>, Option<Tag>, usize),
    Map(Vec<(Node, Node)>, Option<Tag>, usize, Option<Node>),
}

/// Parses a YAML stream into its documents.
fn parse_stream(text: &str) -> Result<Vec<ParsedDoc>, ParseError> {
    let mut docs = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut alias_budget = MAX_ALIAS_NODES;
    let mut root: Option<Node> = None;
    let mut doc_line = 1;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| ParseError {
            line: e.marker().line(),
            col: e.marker().col(),
            message: e.info().to_owned(),
        })?;
        let at = |message: String| ParseError {
            line: span.start.line(),
            col: span.start.col(),
            message,
        };
        let (node, anchor) = match event {
            Event::DocumentStart(_) => {
                doc_line = span.start.line();
                continue;
            }
            Event::DocumentEnd => {
                if let Some(node) = root.take() {
                    docs.push(ParsedDoc { node, line: doc_line });
                }
                continue;
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if stack.len() >= MAX_DEPTH => {
                return Err(at(format!("nested more than {MAX_DEPTH} levels deep")));
            }
            Event::SequenceStart(anchor, tag) => {
                stack.push(Open::Seq(Vec::new(), tag.map(|t| t.into_owned()), anchor));
                continue;
            }
            Event::MappingStart(anchor, tag) => {
                stack.push(Open::Map(Vec::new(), tag.map(|t| t.into_owned()), anchor, None));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Open::Seq(items, tag, anchor)) => (Node::Seq(items, tag), anchor),
                Some(Open::Map(entries, tag, anchor, _)) => (Node::Map(entries, tag), anchor),
                None => return Err(at("a collection ends that never began".into())),
            },
            Event::Scalar(value, style, anchor, tag) => (
                Node::Scalar(Scalar {
                    value: value.into_owned(),
                    style,
                    tag: tag.map(|t| t.into_owned()),
                }),
                anchor,
            ),
            Event::Alias(id) => {
                let node = anchors
                    .get(&id)
                    .ok_or_else(|| at("an alias to an unknown anchor".into()))?;
                let size = node.size();
                if size > alias_budget {
                    return Err(at(format!("aliases expand to more than {MAX_ALIAS_NODES} nodes")));
                }
                alias_budget -= size;
                (node.clone(), 0)
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd => continue,
        };
        if anchor > 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Open::Seq(items, ..)) => items.push(node),
            Some(Open::Map(entries, _, _, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    if let Some(name) = k.as_str() {
                        if entries.iter().any(|(e, _)| e.as_str() == Some(name)) {
                            return Err(at(format!("the key {name:?} appears twice in one mapping")));
                        }
                    }
                    entries.push((k, node));
                }
            },
        }
    }
    Ok(docs)
}

// --- writing: the tree to YAML ------------------------------------------------------

/// Writes a document in block style, two spaces per level, lists indented
/// under their key, each scalar as it was written.
fn emit_document(node: &Node) -> Result<String, String> {
    let mut out = String::new();
    match node {
        Node::Map(entries, tag) if !entries.is_empty() => {
            if let Some(t) = tag {
                out.push_str(&tag_text(t));
                out.push('\n');
            }
            emit_entries(entries, 0, false, &mut out)?;
        }
        Node::Seq(items, tag) if !items.is_empty() => {
            if let Some(t) = tag {
                out.push_str(&tag_text(t));
                out.push('\n');
            }
            emit_items(items, 0, false, &mut out)?;
        }
        other => {
            // A scalar or an empty collection on a line of its own; nothing
            // for an empty document.
            let mut text = String::new();
            emit_value(other, 0, false, &mut text)?;
            if text != "\n" {
                out.push_str(text.strip_prefix(' ').unwrap_or(&text));
            }
        }
    }
    Ok(out)
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// Mapping entries at column `indent`; the first on the current line when
/// `inline` (after `- `).
fn emit_entries(entries: &[(Node, Node)], indent: usize, inline: bool, out: &mut String) -> Result<(), String> {
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 || !inline {
            pad(out, indent);
        }
        out.push_str(&key_text(k)?);
        out.push(':');
        emit_value(v, indent, false, out)?;
    }
    Ok(())
}

/// List items with their `-` at column `indent`.
fn emit_items(items: &[Node], indent: usize, inline: bool, out: &mut String) -> Result<(), String> {
    for (i, item) in items.iter().enumerate() {
        if i > 0 || !inline {
            pad(out, indent);
        }
        out.push('-');
        emit_value(item, indent, true, out)?;
    }
    Ok(())
}

/// A value after `key:` or `-` (the key or dash at column `indent`),
/// ending with its line break.
fn emit_value(node: &Node, indent: usize, in_list: bool, out: &mut String) -> Result<(), String> {
    let tag = match node {
        Node::Scalar(_) => None,
        Node::Seq(_, t) | Node::Map(_, t) => t.as_ref(),
    };
    if let Some(t) = tag {
        out.push(' ');
        out.push_str(&tag_text(t));
    }
    match node {
        Node::Scalar(s) => {
            let text = scalar_text(s, indent + 2);
            if !text.is_empty() {
                out.push(' ');
                out.push_str(&text);
            }
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
        Node::Seq(items, _) if items.is_empty() => out.push_str(" []\n"),
        Node::Map(entries, _) if entries.is_empty() => out.push_str(" {}\n"),
        Node::Seq(items, _) if in_list && tag.is_none() => {
            out.push(' ');
            emit_items(items, indent + 2, true, out)?;
        }
        Node::Map(entries, _) if in_list && tag.is_none() => {
            out.push(' ');
            emit_entries(entries, indent + 2, true, out)?;
        }
        Node::Seq(items, _) => {
            out.push('\n');
            emit_items(items, indent + 2, false, out)?;
        }
        Node::Map(entries, _) => {
            out.push('\n');
            emit_entries(entries, indent + 2, false, out)?;
        }
    }
    Ok(())
}

fn tag_text(tag: &Tag) -> String {
    if tag.is_yaml_core_schema() {
        format!("!!{}", tag.suffix)
    } else if tag.handle == "!" {
        format!("!{}", tag.suffix)
    } else {
        format!("!<{}{}>", tag.handle, tag.suffix)
    }
}

/// A mapping key: a scalar on one line.
fn key_text(key: &Node) -> Result<String, String> {
    let Node::Scalar(s) = key else {
        return Err(format!(
            "a mapping key is {}, which Kubernetes objects never have and inject does not write",
            key.describe()
        ));
    };
    let text = match s.style {
        ScalarStyle::Plain if s.value.is_empty() && s.tag.is_none() => "~".to_owned(),
        ScalarStyle::Plain | ScalarStyle::SingleQuoted if !needs_escapes(&s.value) => scalar_text(s, 0),
        _ => with_tag(s, double_quoted(&s.value)),
    };
    if text.chars().count() > 1000 {
        return Err("a mapping key longer than 1000 characters".into());
    }
    Ok(text)
}

fn with_tag(s: &Scalar, text: String) -> String {
    match &s.tag {
        Some(t) if text.is_empty() => tag_text(t),
        Some(t) => format!("{} {text}", tag_text(t)),
        None => text,
    }
}

/// A scalar as written: plain as it was, quoted with the same quotes where
/// they can hold it, a block as a literal block (content at column
/// `indent`, ending with a line break) where that can hold it, else
/// double-quoted.
fn scalar_text(s: &Scalar, indent: usize) -> String {
    let text = match s.style {
        ScalarStyle::Plain if s.value.is_empty() || plain_writable(&s.value) => s.value.clone(),
        ScalarStyle::SingleQuoted if !needs_escapes(&s.value) => format!("'{}'", s.value.replace('\'', "''")),
        ScalarStyle::Literal | ScalarStyle::Folded if literal_holds(&s.value) => {
            let body = s.value.strip_suffix('\n');
            let mut text = String::from(if body.is_some() { "|\n" } else { "|-\n" });
            for line in body.unwrap_or(&s.value).split('\n') {
                if !line.is_empty() {
                    pad(&mut text, indent);
                    text.push_str(line);
                }
                text.push('\n');
            }
            text
        }
        _ => double_quoted(&s.value),
    };
    with_tag(s, text)
}

/// Whether a plain scalar of the input reads back the same when written
/// plain in block style. The parser takes a few plain scalars in flow
/// style that block style reads otherwise (`{app: >x}`): those are quoted.
fn plain_writable(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let first_ok = match first {
        '-' | '?' | ':' => chars.next().is_some_and(|c| !c.is_whitespace()),
        ',' | '[' | ']' | '{' | '}' | '#' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%' | '@' | '`' => false,
        c => !c.is_whitespace(),
    };
    first_ok
        && !s.ends_with(|c: char| c.is_whitespace() || c == ':')
        && ![": ", ":\t", " #", "\t#"].iter().any(|p| s.contains(p))
        && !s.starts_with("---")
        && !s.starts_with("...")
        && !s.chars().any(|c| matches!(c, '\n' | '\r' | '\t') || is_special(c))
}

/// Characters that only a double-quoted scalar can hold.
fn is_special(c: char) -> bool {
    (c.is_control() && c != '\t') || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
}

fn needs_escapes(s: &str) -> bool {
    s.chars().any(|c| c == '\n' || c == '\t' || is_special(c))
}

/// Whether a literal block reads back as `s`: some text, at most one final
/// line break, no line starting with a blank before the first with text
/// (it would set the indentation), and nothing that needs an escape.
fn literal_holds(s: &str) -> bool {
    let body = s.strip_suffix('\n').unwrap_or(s);
    !body.trim().is_empty()
        && !body.ends_with('\n')
        && body
            .split('\n')
            .find(|l| !l.is_empty())
            .is_some_and(|l| !l.starts_with([' ', '\t']))
        && !s.chars().any(|c| c != '\n' && is_special(c))
}

fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if is_special(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// --- the documents as Kubernetes reads them ---------------------------------------------

/// The documents of a YAML stream as JSON values, typed as Kubernetes
/// reads YAML (YAML 1.1 plain scalars: `0644` is 420, `yes` is true).
/// The tests compare manifests with it.
pub fn documents_as_json(input: &str) -> Result<Vec<serde_json::Value>, InjectError> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut document = 0;
    for chunk in split_documents(input) {
        match parse_stream(chunk.text) {
            Ok(docs) => {
                for doc in docs {
                    document += 1;
                    out.push(to_json(&doc.node));
                }
            }
            Err(e) => {
                document += 1;
                problems.push(Problem {
                    place: Place {
                        document,
                        line: chunk.first_line + e.line.saturating_sub(1),
                        object: None,
                    },
                    message: format!("not valid YAML: {}", e.message),
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(InjectError { problems })
    }
}

fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match node {
        Node::Scalar(s) => {
            let core = s
                .tag
                .as_ref()
                .filter(|t| t.is_yaml_core_schema())
                .map(|t| t.suffix.as_str());
            match (s.style, core) {
                (_, Some("str")) => Value::String(s.value.clone()),
                (ScalarStyle::Plain, _) => plain_json(&s.value),
                _ => Value::String(s.value.clone()),
            }
        }
        Node::Seq(items, _) => Value::Array(items.iter().map(to_json).collect()),
        Node::Map(entries, _) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
    }
}

/// A plain scalar by YAML 1.1's rules (as go-yaml v2 reads them).
fn plain_json(v: &str) -> serde_json::Value {
    use serde_json::Value;
    match v {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => return Value::Bool(true),
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false)
        }
        _ => {}
    }
    let (negative, digits) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    let clean = digits.replace('_', "");
    let int = if let Some(hex) = clean.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(bin) = clean.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()
    } else if clean.len() > 1 && clean.starts_with('0') && clean.bytes().all(|b| b.is_ascii_digit()) {
        i64::from_str_radix(&clean[1..], 8).ok()
    } else if !clean.is_empty() && clean.bytes().all(|b| b.is_ascii_digit()) {
        clean.parse::<i64>().ok()
    } else {
        None
    };
    if let Some(i) = int {
        return Value::from(if negative { -i } else { i });
    }
    let float_like = clean.contains('.')
        && clean
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if float_like {
        if let Ok(f) = clean.parse::<f64>() {
            if let Some(n) = serde_json::Number::from_f64(if negative { -f } else { f }) {
                return Value::Number(n);
            }
        }
    }
    Value::String(v.to_owned())
}

// --- the command line -------------------------------------------------------------

const ABOUT: &str = "Add the headroom sidecar to Kubernetes YAML: manifests in, the same with the sidecar out.";

const LONG_ABOUT: &str = "Reads Kubernetes YAML (one or more documents separated by ---, or a kind: List) from \
FILE or standard input and writes it to standard output with the headroom sidecar added to the pod template \
of each Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob and Pod, as \
`linkerd inject` does. Other documents pass through unchanged.

Each workload gets what the Helm chart's sidecar has:
  - the container `headroom`: the image, args [run], HEADROOM_* env (so `kubectl exec -c headroom -- \
headroom check` needs no flags), POD_NAME and POD_NAMESPACE from the downward API, the port `metrics` \
(9184) with a liveness probe on /healthz, requests and limits, and a securityContext that runs it \
non-root with a read-only root filesystem and every capability dropped;
  - shareProcessNamespace: true on the pod, so that headroom sees the Go process;
  - the emptyDir `headroom-profiles` (sizeLimit 288Mi) for heap profiles, unless --no-profiles.

headroom watches the container named by --container (by default the pod's only container): the process \
named by --process (by default the file name of the container's command, else its image's name), the \
container's memory limit through the downward API, and the Go endpoint of --go-url (by default the pod's \
annotation headroom.dev/go-url.CONTAINER or headroom.dev/go-url).

A pod that already has a container or init container named `headroom` is left as it is, so a second \
pass changes nothing. A document that gets the sidecar is written anew: its values and the order of its \
keys are kept, but its comments are lost (except those above it). Documents that need no change keep \
every byte, comments included.

Exit status: 0 done; 2 the input cannot be injected (not YAML, a workload without a container to watch, \
or with several and no --container); each problem is named by document and object, and nothing is \
written; 64 bad flags.";

const EXAMPLES: &str = "Examples:
  headroom inject deploy.yaml > deploy-with-headroom.yaml
  headroom inject --container api --go-url http://127.0.0.1:6060/debug/vars deploy.yaml
  kubectl get deploy api -o yaml | headroom inject --process api-server | kubectl apply -f -
  helm template my-release ./chart | headroom inject --native-sidecar
  kustomize build overlays/prod | headroom inject --proc-access sys-ptrace -";

/// `headroom inject`'s flags.
pub fn command() -> clap::Command {
    clap::Command::new("inject")
        .about(ABOUT)
        .long_about(LONG_ABOUT)
        .after_help(EXAMPLES)
        .arg(
            Arg::new("file")
                .value_name("FILE")
                .help("The YAML to read; `-` or none: standard input."),
        )
        .arg(
            Arg::new("container")
                .long("container")
                .value_name("NAME")
                .help("The container that runs the Go service. Default: the pod's only container."),
        )
        .arg(Arg::new("process").long("process").value_name("NAME").help(
            "The Go process's name (HEADROOM_PROCESS). Default: the file name of the container's command, else its image's name.",
        ))
        .arg(Arg::new("go-url").long("go-url").value_name("URL").help(
            "The Go service's expvar or Prometheus endpoint on the pod's loopback (HEADROOM_GO_URL). Default: the pod's annotation headroom.dev/go-url.CONTAINER or headroom.dev/go-url, else none. Example: --go-url http://127.0.0.1:6060/debug/vars",
        ))
        .arg(
            Arg::new("image")
                .long("image")
                .value_name("IMAGE")
                .help(format!("The sidecar's image. Default {}.", default_image())),
        )
        .arg(
            Arg::new("native-sidecar")
                .long("native-sidecar")
                .action(ArgAction::SetTrue)
                .help("Add headroom as a native sidecar (Kubernetes 1.29 and later): an init container with restartPolicy: Always, which a Job's pod does not wait for."),
        )
        .arg(
            Arg::new("proc-access")
                .long("proc-access")
                .value_name("MODE")
                .help("same-user: run as the Go service's UID, no capability (the default); sys-ptrace: root with CAP_SYS_PTRACE alone, for a Go service that runs as root or as another UID."),
        )
        .arg(
            Arg::new("limit-basis")
                .long("limit-basis")
                .value_name("BASIS")
                .help("HEADROOM_LIMIT_BASIS: unreclaimable (the default), working_set, usage or rss."),
        )
        .arg(
            Arg::new("no-profiles")
                .long("no-profiles")
                .action(ArgAction::SetTrue)
                .help("No heap profiles: no emptyDir, no HEADROOM_PROFILE_DIR."),
        )
        .arg(
            Arg::new("readiness-probe")
                .long("readiness-probe")
                .action(ArgAction::SetTrue)
                .help("Add a readiness probe on /readyz (off by default: the pod would not be Ready while headroom is not)."),
        )
}

/// Where the YAML comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

/// `headroom inject` as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectCommand {
    pub input: Input,
    pub options: InjectOptions,
}

impl InjectCommand {
    /// Validates the flags; `Err` lists every bad one.
    pub fn from_matches(m: &ArgMatches) -> Result<InjectCommand, Vec<String>> {
        let mut errors = Vec::new();
        let get = |name: &str| m.get_one::<String>(name).cloned();
        let mut name_flag = |flag: &str, what: &str| {
            let v = get(flag)?;
            if v.is_empty() || v.contains(['/', ' ', '\n']) {
                errors.push(format!("--{flag} {v:?}: expected {what}"));
                return None;
            }
            Some(v)
        };
        let container = name_flag("container", "a container's name");
        let process = name_flag("process", "a process name (its executable's file name), without a path");
        let go_url = get("go-url");
        if let Some(u) = &go_url {
            let rest = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                errors.push(format!(
                    "--go-url {u:?}: expected an http:// or https:// URL such as http://127.0.0.1:6060/debug/vars"
                ));
            }
        }
        let image = get("image").unwrap_or_else(default_image);
        if image.is_empty() || image.contains(char::is_whitespace) {
            errors.push(format!(
                "--image {image:?}: expected an image reference such as headroom:0.1.0"
            ));
        }
        let proc_access = match get("proc-access") {
            None => ProcAccess::SameUser,
            Some(v) => ProcAccess::parse(&v).unwrap_or_else(|| {
                errors.push(format!("--proc-access {v:?}: expected same-user or sys-ptrace"));
                ProcAccess::SameUser
            }),
        };
        let limit_basis = match get("limit-basis") {
            None => LimitBasis::Unreclaimable,
            Some(v) => LimitBasis::parse(&v).unwrap_or_else(|| {
                errors.push(format!("--limit-basis {v:?}: expected one of {}", LimitBasis::NAMES));
                LimitBasis::Unreclaimable
            }),
        };
        let input = match get("file").as_deref() {
            None | Some("-") => Input::Stdin,
            Some(path) => Input::File(PathBuf::from(path)),
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(InjectCommand {
            input,
            options: InjectOptions {
                container,
                process,
                go_url,
                image,
                native_sidecar: m.get_flag("native-sidecar"),
                proc_access,
                limit_basis,
                profiles: !m.get_flag("no-profiles"),
                readiness_probe: m.get_flag("readiness-probe"),
            },
        })
    }
}

/// Runs `headroom inject`: the injected YAML on stdout, the notes and
/// problems on stderr; returns the exit status.
pub fn run(cmd: &InjectCommand) -> u8 {
    let (name, bytes) = match &cmd.input {
        Input::Stdin => {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprintln!("headroom inject: reading YAML from standard input (end it with Ctrl-D)");
            }
            let mut buf = Vec::new();
            (
                "standard input".to_owned(),
                std::io::stdin().read_to_end(&mut buf).map(|_| buf),
            )
        }
        Input::File(path) => (path.display().to_string(), std::fs::read(path)),
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) => {
            eprintln!("headroom inject: cannot read {name}: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "headroom inject: {name} is not UTF-8 text (byte {}); Kubernetes YAML is UTF-8",
                e.utf8_error().valid_up_to()
            );
            return EXIT_BAD_INPUT;
        }
    };
    match inject_with_notes(&text, &cmd.options) {
        Ok(done) => {
            for note in &done.notes {
                eprintln!("headroom inject: {note}");
            }
            let mut out = std::io::stdout().lock();
            match out.write_all(done.output.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => 0,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
                Err(e) => {
                    eprintln!("headroom inject: cannot write the output: {e}");
                    EXIT_BAD_INPUT
                }
            }
        }
        Err(e) => {
            for p in &e.problems {
                eprintln!("headroom inject: {name}: {p}");
            }
            eprintln!("headroom inject: nothing written; see `headroom inject --help`");
            EXIT_BAD_INPUT
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const APP: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
        - name: web
          image: registry.example/team/web-server:1.2@sha256:abc
";

    fn opts() -> InjectOptions {
        InjectOptions::default()
    }

    fn json_of(yaml: &str) -> Vec<Value> {
        documents_as_json(yaml).unwrap()
    }

    fn pod_spec(doc: &Value) -> &Value {
        &doc["spec"]["template"]["spec"]
    }

    fn sidecar(spec: &Value) -> &Value {
        spec["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "headroom")
            .expect("a headroom container")
    }

    fn env(c: &Value, name: &str) -> Value {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    #[test]
    fn adds_the_sidecar_to_a_deployment() {
        let out = inject(APP, &opts()).unwrap();
        let docs = json_of(&out);
        let spec = pod_spec(&docs[0]);
        assert_eq!(spec["shareProcessNamespace"], json!(true));
        let c = sidecar(spec);
        assert_eq!(c["image"], json!(default_image()));
        assert_eq!(c["args"], json!(["run"]));
        assert_eq!(env(c, "HEADROOM_PROCESS")["value"], json!("web-server"));
        assert_eq!(env(c, "CONTAINER_NAME")["value"], json!("web"));
        assert_eq!(
            env(c, "HEADROOM_MEMORY_LIMIT")["valueFrom"]["resourceFieldRef"],
            json!({"containerName": "web", "resource": "limits.memory"})
        );
        assert_eq!(env(c, "HEADROOM_GO_URL"), Value::Null);
        assert_eq!(
            c["ports"],
            json!([{"name": "metrics", "containerPort": 9184, "protocol": "TCP"}])
        );
        assert_eq!(
            spec["volumes"],
            json!([{"name": "headroom-profiles", "emptyDir": {"sizeLimit": "288Mi"}}])
        );
        // The app container is untouched, and comes first.
        assert_eq!(
            spec["containers"][0],
            json_of(APP)[0]["spec"]["template"]["spec"]["containers"][0]
        );
    }

    #[test]
    fn a_second_pass_changes_nothing() {
        for o in [
            opts(),
            InjectOptions {
                native_sidecar: true,
                ..opts()
            },
        ] {
            let once = inject(APP, &o).unwrap();
            assert_ne!(once, APP);
            assert_eq!(inject(&once, &o).unwrap(), once);
        }
    }

    #[test]
    fn documents_without_workloads_are_copied_byte_for_byte() {
        let input = "# a comment\napiVersion: v1\nkind: Service  # trailing\nmetadata: {name: x}\n---\n\n---\n# only a comment\n";
        assert_eq!(inject(input, &opts()).unwrap(), input);
        // Not a core/apps/batch group: a custom resource named Deployment.
        let custom = APP.replace("apps/v1", "example.com/v1");
        let done = inject_with_notes(&custom, &opts()).unwrap();
        assert_eq!(done.output, custom);
        assert_eq!(
            done.notes,
            ["document 1 (Deployment/web, line 1): apiVersion \"example.com/v1\" is not a Deployment's that inject knows: left as it is"]
        );
    }

    #[test]
    fn values_kubernetes_reads_as_yaml_1_1_survive_the_rewrite() {
        let input = format!(
            "{APP}          env:\n            - {{name: A, value: \"yes\"}}\n            - {{name: B, value: 'on'}}\n            - name: C\n              value: \"0644\"\n      volumes:\n        - name: cfg\n          configMap: {{name: cfg, defaultMode: 0644}}\n        - name: d\n          secret: {{secretName: s, defaultMode: 0x1ff}}\n"
        );
        let out = inject(&input, &opts()).unwrap();
        assert!(out.contains("defaultMode: 0644"), "{out}");
        assert!(
            out.contains("\"yes\"") && out.contains("'on'") && out.contains("\"0644\""),
            "{out}"
        );
        let spec = json_of(&out)[0]["spec"]["template"]["spec"].clone();
        assert_eq!(spec["volumes"][0]["configMap"]["defaultMode"], json!(420));
        assert_eq!(spec["volumes"][1]["secret"]["defaultMode"], json!(511));
        assert_eq!(spec["containers"][0]["env"][0]["value"], json!("yes"));
        assert_eq!(spec["containers"][0]["env"][1]["value"], json!("on"));
    }

    #[test]
    fn every_workload_kind_and_list_items() {
        let kinds = [
            ("v1", "Pod", vec!["spec"]),
            ("v1", "ReplicationController", vec!["spec", "template", "spec"]),
            ("apps/v1", "Deployment", vec!["spec", "template", "spec"]),
            ("apps/v1", "StatefulSet", vec!["spec", "template", "spec"]),
            ("apps/v1", "DaemonSet", vec!["spec", "template", "spec"]),
            ("apps/v1", "ReplicaSet", vec!["spec", "template", "spec"]),
            ("batch/v1", "Job", vec!["spec", "template", "spec"]),
            (
                "batch/v1",
                "CronJob",
                vec!["spec", "jobTemplate", "spec", "template", "spec"],
            ),
        ];
        for (api, kind, path) in kinds {
            let mut pod = json!({"containers": [{"name": "app", "image": "go-app:1"}]});
            for key in path.iter().rev() {
                pod = json!({ *key: pod });
            }
            pod["apiVersion"] = json!(api);
            pod["kind"] = json!(kind);
            pod["metadata"] = json!({"name": "x"});
            // JSON is YAML.
            let input = serde_json::to_string(&pod).unwrap();
            let out = inject(&input, &opts()).unwrap();
            let got = &json_of(&out)[0];
            let spec = path.iter().fold(got, |v, k| &v[*k]);
            assert_eq!(sidecar(spec)["name"], "headroom", "{kind}: {out}");
            assert_eq!(spec["shareProcessNamespace"], json!(true), "{kind}");
            let list = format!("{{apiVersion: v1, kind: List, items: [{input}]}}");
            let out = inject(&list, &opts()).unwrap();
            let docs = json_of(&out);
            let spec = path.iter().fold(&docs[0]["items"][0], |v, k| &v[*k]);
            assert_eq!(sidecar(spec)["name"], "headroom", "List of {kind}: {out}");
        }
    }

    #[test]
    fn the_native_sidecar_is_an_init_container() {
        let out = inject(
            APP,
            &InjectOptions {
                native_sidecar: true,
                ..opts()
            },
        )
        .unwrap();
        let spec = pod_spec(&json_of(&out)[0]).clone();
        assert_eq!(spec["containers"].as_array().unwrap().len(), 1);
        let init = &spec["initContainers"][0];
        assert_eq!(init["name"], "headroom");
        assert_eq!(init["restartPolicy"], "Always");
        // initContainers is written before containers.
        assert!(out.find("initContainers:").unwrap() < out.find("containers:\n        - name: web").unwrap());
    }

    #[test]
    fn choosing_the_container() {
        let two = APP.replace(
            "          image: registry.example/team/web-server:1.2@sha256:abc\n",
            "          image: web:1\n        - name: proxy\n          image: envoy:1\n",
        );
        let err = inject(&two, &opts()).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        let msg = err.to_string();
        assert!(
            msg.contains("document 1 (Deployment/web, line 1)") && msg.contains("2 containers (\"web\", \"proxy\")"),
            "{msg}"
        );
        assert!(msg.contains("--container"), "{msg}");
        let out = inject(
            &two,
            &InjectOptions {
                container: Some("proxy".into()),
                ..opts()
            },
        )
        .unwrap();
        let c = sidecar(pod_spec(&json_of(&out)[0])).clone();
        assert_eq!(env(&c, "HEADROOM_PROCESS")["value"], "envoy");
        assert_eq!(env(&c, "HEADROOM_TARGET_CONTAINER")["value"], "proxy");
        let err = inject(
            &two,
            &InjectOptions {
                container: Some("db".into()),
                ..opts()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("no container named \"db\""), "{err}");
    }

    #[test]
    fn the_process_name() {
        let cases = [
            ("{name: a, image: 'ghcr.io/o/api:1'}", "api"),
            ("{name: a, image: api}", "api"),
            ("{name: a, image: 'localhost:5000/api@sha256:ff'}", "api"),
            ("{name: a, image: x, command: [/usr/local/bin/checkout]}", "checkout"),
            ("{name: a, image: x, command: [sh, -c, exec checkout]}", "x"),
        ];
        for (c, want) in cases {
            let node = parse_stream(c).unwrap().remove(0).node;
            assert_eq!(process_name(&node).map(|p| p.0).as_deref(), Some(want), "{c}");
        }
        assert_eq!(process_name(&parse_stream("{name: a}").unwrap().remove(0).node), None);
    }

    #[test]
    fn the_go_url_from_the_pod_annotation() {
        let annotated = APP.replace(
            "  template:\n",
            "  template:\n    metadata:\n      annotations:\n        headroom.dev/go-url: http://127.0.0.1:1/metrics\n        headroom.dev/go-url.web: http://127.0.0.1:6060/debug/vars\n",
        );
        let out = inject(&annotated, &opts()).unwrap();
        let c = sidecar(pod_spec(&json_of(&out)[0])).clone();
        assert_eq!(env(&c, "HEADROOM_GO_URL")["value"], "http://127.0.0.1:6060/debug/vars");
        let flag = InjectOptions {
            go_url: Some("http://127.0.0.1:9/x".into()),
            ..opts()
        };
        let c = sidecar(pod_spec(&json_of(&inject(&annotated, &flag).unwrap())[0])).clone();
        assert_eq!(env(&c, "HEADROOM_GO_URL")["value"], "http://127.0.0.1:9/x");
    }

    #[test]
    fn proc_access_modes() {
        let ptrace = InjectOptions {
            proc_access: ProcAccess::SysPtrace,
            ..opts()
        };
        let c = sidecar(pod_spec(&json_of(&inject(APP, &ptrace).unwrap())[0])).clone();
        assert_eq!(c["securityContext"]["runAsUser"], 0);
        assert_eq!(c["securityContext"]["runAsNonRoot"], false);
        assert_eq!(
            c["securityContext"]["capabilities"],
            json!({"drop": ["ALL"], "add": ["SYS_PTRACE"]})
        );
        let c = sidecar(pod_spec(&json_of(&inject(APP, &opts()).unwrap())[0])).clone();
        assert_eq!(c["securityContext"]["runAsNonRoot"], true);
        assert_eq!(c["securityContext"]["capabilities"], json!({"drop": ["ALL"]}));
        // A root Go service needs sys-ptrace: said.
        let root = APP.replace("    spec:\n", "    spec:\n      securityContext: {runAsUser: 0}\n");
        let notes = inject_with_notes(&root, &opts()).unwrap().notes.join("\n");
        assert!(
            notes.contains("runs as root") && notes.contains("--proc-access sys-ptrace"),
            "{notes}"
        );
        // The target's own UID and GID are the sidecar's.
        let own = format!("{APP}          securityContext: {{runAsUser: 10001, runAsGroup: 10002}}\n");
        let c = sidecar(pod_spec(&json_of(&inject(&own, &opts()).unwrap())[0])).clone();
        assert_eq!(c["securityContext"]["runAsUser"], 10001);
        assert_eq!(c["securityContext"]["runAsGroup"], 10002);
    }

    #[test]
    fn bad_inputs_are_errors_that_name_the_document() {
        let cases: &[(&str, &str)] = &[
            ("a: [1, 2\n", "document 1 (line "),
            ("kind: Service\n---\n{{{\n", "document 2 (line 2)"),
            (
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n",
                "has no spec.template",
            ),
            (
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {template: {spec: {}}}\n",
                "has no spec.template.spec.containers",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: {name: a}}\n",
                "spec.containers is a mapping, not a list of containers",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n",
                "is empty",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{image: x}]}\n",
                "[0] has no name",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [7]}\n",
                "is the scalar \"7\"",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: 3\n",
                "spec is the scalar",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a}]}\n",
                "--process",
            ),
            ("a: 1\na: 2\n", "appears twice"),
            ("a: *nowhere\n", "unknown anchor"),
            ("apiVersion: v1\nkind: List\nitems: {a: 1}\n", "items is a mapping"),
        ];
        for (input, want) in cases {
            let err = inject(input, &opts()).expect_err(input);
            assert!(err.to_string().contains(want), "{input:?}: {err}");
        }
        // Every problem at once.
        let err = inject("kind: Pod\napiVersion: v1\nspec: {}\n---\n[\n", &opts()).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(
            err.problems[0]
                .to_string()
                .starts_with("document 1 (Pod/(no name), line 1)"),
            "{err}"
        );
    }

    #[test]
    fn deep_nesting_and_alias_bombs_are_refused() {
        let deep = "[".repeat(MAX_DEPTH + 20);
        assert!(inject(&deep, &opts()).unwrap_err().to_string().contains("nested"));
        // The parser's own limit.
        assert!(inject(&"[".repeat(100_000), &opts()).is_err());
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 { "a".to_owned() } else { format!("b{}", i - 1) };
            bomb.push_str(&format!("b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(inject(&bomb, &opts())
            .unwrap_err()
            .to_string()
            .contains("aliases expand"));
    }

    /// Random edits of a real manifest: never a panic; what is accepted is
    /// injected once and for all.
    #[test]
    fn mangled_input_never_panics() {
        let base = format!(
            "{APP}---\napiVersion: v1\nkind: List\nitems:\n  - {}\n",
            APP.replace('\n', "\n    ")
        );
        let bytes = base.as_bytes();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b" \n-:[]{}#&*!|>'\"%@`,?0aZ\t";
        let mut accepted = 0;
        for _ in 0..3000 {
            let mut b = bytes.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % b.len();
                match next() % 3 {
                    0 => b[at] = alphabet[(next() as usize) % alphabet.len()],
                    1 => {
                        b.remove(at);
                    }
                    _ => b.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                }
            }
            let Ok(text) = String::from_utf8(b) else { continue };
            if let Ok(out) = inject(&text, &opts()) {
                accepted += 1;
                assert_eq!(inject(&out, &opts()).as_ref(), Ok(&out), "input:\n{text}");
                assert_eq!(
                    documents_as_json(&out).map(|d| d.len()),
                    documents_as_json(&text).map(|d| d.len())
                );
            }
        }
        assert!(accepted > 100, "only {accepted} mangled inputs were accepted");
    }

    /// Whatever the scalar, what is written reads back the same.
    #[test]
    fn scalars_round_trip() {
        let values = [
            "",
            " ",
            "a",
            "a b",
            "line\n",
            "two\nlines",
            "two\nlines\n",
            "\nleading",
            "  indented\nx\n",
            "trailing  \n",
            "ends\n\n",
            "tab\there",
            "quote \" and \\ and '",
            "ctrl \u{1} \u{7f} \u{85} \u{2028}",
            "ünïcödé ☃",
            "---",
            "- x",
            "# not a comment",
            "a: b",
            "yes",
            "0644",
            "*",
            "&a",
            "!t",
            "%x",
            "@x",
            "`x",
            "x\n  y\n\n  z",
            "\n",
            "\n\n",
            "x\r\ny",
        ];
        for style in [
            ScalarStyle::Plain,
            ScalarStyle::SingleQuoted,
            ScalarStyle::DoubleQuoted,
            ScalarStyle::Literal,
            ScalarStyle::Folded,
        ] {
            for v in values {
                let plain = parse_stream(&format!("k: {v}\n"))
                    .ok()
                    .and_then(|d| d.into_iter().next());
                let is_plain = plain.is_some_and(|d| {
                    matches!(d.node.get("k"), Some(Node::Scalar(s)) if s.style == ScalarStyle::Plain && s.value == v)
                });
                if style == ScalarStyle::Plain && !is_plain {
                    continue; // the parser makes no such plain scalar
                }
                let scalar = Node::Scalar(Scalar {
                    value: v.to_owned(),
                    style,
                    tag: None,
                });
                let doc = Node::Map(
                    vec![
                        (Node::str("k"), scalar.clone()),
                        (Node::str("list"), Node::seq(vec![scalar.clone(), scalar.clone()])),
                        (
                            Node::Scalar(Scalar {
                                value: v.to_owned(),
                                style,
                                tag: None,
                            }),
                            Node::raw("1"),
                        ),
                        (Node::str("after"), Node::raw("2")),
                    ],
                    None,
                );
                let text = emit_document(&doc).unwrap();
                let back = parse_stream(&text).unwrap_or_else(|e| panic!("{style:?} {v:?}: {e:?} in\n{text}"));
                let Node::Map(entries, _) = &back[0].node else {
                    panic!("{text}")
                };
                let k = entries[0].1.as_str();
                // A plain scalar written plain reads back as the same text.
                assert_eq!(k, Some(v), "{style:?} {v:?}:\n{text}");
                assert_eq!(
                    entries[1].1,
                    Node::seq(vec![entries[0].1.clone(), entries[0].1.clone()]),
                    "{text}"
                );
                assert_eq!(
                    entries[2].0.as_str(),
                    Some(if v.is_empty() && style == ScalarStyle::Plain {
                        "~"
                    } else {
                        v
                    }),
                    "{style:?} {v:?} as a key:\n{text}"
                );
                assert_eq!(entries[3].1.as_str(), Some("2"), "{text}");
            }
        }
    }

    /// Found by fuzzing: the parser reads `>>>>legacy` in flow style as a
    /// plain scalar, which block style would read as a folded block.
    #[test]
    fn plain_scalars_that_block_style_reads_otherwise_are_quoted() {
        let input = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: >>>>legacy, b: |x, c: -1, d: a:b, e: 1:20}}\nspec: {containers: [{name: a, image: x}]}\n";
        let out = inject(input, &opts()).unwrap();
        assert_eq!(inject(&out, &opts()).as_ref(), Ok(&out));
        let mut labels = json_of(&out)[0]["metadata"]["labels"].clone();
        assert_eq!(labels[super::SIDECAR_LABEL], "true", "the pod labelled");
        labels.as_object_mut().unwrap().remove(super::SIDECAR_LABEL);
        let labels = &labels;
        assert_eq!(labels, &json_of(input)[0]["metadata"]["labels"]);
        assert_eq!(labels["app"], ">>>>legacy");
        // Numbers and other plain scalars keep their text.
        assert!(
            out.contains("c: -1\n") && out.contains("d: a:b\n") && out.contains("e: 1:20\n"),
            "{out}"
        );
        for s in ["a", "-1", "a:b", "http://x:1/y", "1.5", "a b", "~", "x#y"] {
            assert!(plain_writable(s), "{s}");
        }
        for s in [
            "", ">x", "|x", "- x", "-", "a: b", "a #b", "x:", " a", "a ", "--- x", "@x", "a\tb",
        ] {
            assert!(!plain_writable(s), "{s:?}");
        }
    }

    #[test]
    fn plain_strings_of_ours_are_unambiguous() {
        for s in [
            "app",
            "metadata.name",
            "/healthz",
            "16Mi",
            "100m",
            "IfNotPresent",
            "limits.memory",
        ] {
            assert!(plain_is_string(s), "{s}");
        }
        for s in [
            "",
            "yes",
            "On",
            "y",
            "null",
            "0644",
            "1e3",
            "9184",
            "0x1F",
            "headroom:0.1.0",
            "1.5",
            ".inf",
            "-x",
            "a b",
        ] {
            assert!(!plain_is_string(s), "{s}");
        }
    }

    #[test]
    fn yaml_1_1_scalars_as_kubernetes_reads_them() {
        let docs = json_of(
            "a: 0644\nb: 0x1f\nc: yes\nd: Off\ne: ~\nf: 1.5\ng: -3\nh: '12'\ni: 1_000\nj: 08\nk: !!str 5\nl: 1.2.3\n",
        );
        assert_eq!(
            docs[0],
            json!({"a": 420, "b": 31, "c": true, "d": false, "e": null, "f": 1.5, "g": -3, "h": "12", "i": 1000, "j": "08", "k": "5", "l": "1.2.3"})
        );
    }

    /// Found by fuzzing: a lone `\r` is a line break, so `\r---` starts a
    /// document; and a chunk of several documents is written with one
    /// marker between them.
    #[test]
    fn documents_split_at_any_line_break_and_stay_as_many() {
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: x}]}\n";
        for tail in [
            "\r---\napiV",
            "...\n--- text\n",
            "...\n---\n...\n",
            "\r--- |\n  block\n",
            "\r---\r[]\r",
        ] {
            let input = format!("{pod}{tail}");
            let out = inject(&input, &opts()).unwrap_or_else(|e| panic!("{tail:?}: {e}"));
            assert_eq!(inject(&out, &opts()).as_ref(), Ok(&out), "{tail:?}");
            let (before, after) = (json_of(&input), json_of(&out));
            assert_eq!(before.len(), after.len(), "{tail:?}:\n{out}");
            assert_eq!(before[1..], after[1..], "{tail:?}:\n{out}");
        }
        // A `---` line with a comment keeps it; content after `---` moves down.
        let marked = format!("--- # the pod\n{pod}");
        assert!(inject(&marked, &opts())
            .unwrap()
            .starts_with("--- # the pod\napiVersion: v1\n"));
        let inline =
            "--- {apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: a, image: x}]}}\n";
        let out = inject(inline, &opts()).unwrap();
        assert!(out.starts_with("---\napiVersion: v1\n"), "{out}");
        assert_eq!(json_of(&out).len(), 1);
    }

    #[test]
    fn rewritten_documents_keep_their_leading_comments_and_marker() {
        let input = format!("kind: Service\n---\n# The web service.\n\n{APP}# trailing comment\n");
        let out = inject(&input, &opts()).unwrap();
        assert!(
            out.starts_with("kind: Service\n---\n# The web service.\n\napiVersion: apps/v1\nkind: Deployment\n"),
            "{out}"
        );
    }

    #[test]
    fn cli_flags() {
        let m = command()
            .try_get_matches_from([
                "inject",
                "--container",
                "api",
                "--native-sidecar",
                "--proc-access",
                "sysPtrace",
                "--limit-basis",
                "rss",
                "--no-profiles",
                "x.yaml",
            ])
            .unwrap();
        let cmd = InjectCommand::from_matches(&m).unwrap();
        assert_eq!(cmd.input, Input::File("x.yaml".into()));
        assert_eq!(cmd.options.container.as_deref(), Some("api"));
        assert!(cmd.options.native_sidecar && !cmd.options.profiles);
        assert_eq!(
            (cmd.options.proc_access, cmd.options.limit_basis),
            (ProcAccess::SysPtrace, LimitBasis::Rss)
        );
        let m = command()
            .try_get_matches_from([
                "inject",
                "--process",
                "/bin/x",
                "--go-url",
                "ftp://x",
                "--proc-access",
                "root",
                "--limit-basis",
                "vibes",
            ])
            .unwrap();
        let errors = InjectCommand::from_matches(&m).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        let m = command().try_get_matches_from(["inject", "-"]).unwrap();
        assert_eq!(InjectCommand::from_matches(&m).unwrap().input, Input::Stdin);
    }
}
