//! Configuration: flags > `HEADROOM_*` env > `--config` TOML file > defaults.
//!
//! One table, [`FLAGS`], lists every setting once: its name, default, help
//! and example. clap's flags and their env names, the TOML keys, the help
//! text and the defaults the validation falls back to are all read from it.
//! clap collects flags and env as raw strings; the file adds what they left
//! out; [`Config::from_map`] validates the merged map and reports every bad
//! key at once. Tests fill that map directly.

use crate::analysis::predict::AnalysisConfig;
use crate::parse::cgroup_files::Limit;
pub use crate::sample::LimitBasis;
use clap::{Arg, ArgAction, ArgMatches};
use serde::Serialize;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Exit status for a bad configuration or usage (EX_USAGE from sysexits.h).
pub const EXIT_CONFIG: i32 = 64;

/// One setting: a flag of `run` and `check`, env `HEADROOM_<NAME>`, and a
/// key of the `--config` file.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// The flag's name, without `--` (`go-interval`).
    pub name: &'static str,
    pub value_name: &'static str,
    pub default: Option<&'static str>,
    pub help: &'static str,
    pub example: Option<&'static str>,
}

impl Flag {
    /// `HEADROOM_GO_INTERVAL` for `go-interval`.
    pub fn env(&self) -> String {
        format!("HEADROOM_{}", self.name.replace('-', "_").to_uppercase())
    }

    fn help_text(&self) -> String {
        let mut h = self.help.to_owned();
        if let Some(d) = self.default {
            h.push_str(&format!(" Default {d}."));
        }
        if let Some(e) = self.example {
            h.push_str(&format!(" Example: --{} {e}", self.name));
        }
        h
    }
}

const fn flag(
    name: &'static str,
    value_name: &'static str,
    default: Option<&'static str>,
    help: &'static str,
    example: Option<&'static str>,
) -> Flag {
    Flag {
        name,
        value_name,
        default,
        help,
        example,
    }
}

/// Every setting, in the order `--help` lists them.
pub const FLAGS: &[Flag] = &[
    flag(
        "listen",
        "ADDR",
        Some("0.0.0.0:9184"),
        "HTTP address for /metrics, /api/v1/status and the dashboard.",
        Some("127.0.0.1:9184"),
    ),
    flag("interval", "DUR", Some("1s"), "Poll period of the cgroup and /proc.", Some("500ms")),
    flag("window", "DUR", Some("10m"), "History used for slopes and predictions.", Some("30m")),
    flag("pid", "PID", None, "PID of the target (shared PID namespace).", Some("1234")),
    flag(
        "process",
        "NAME",
        None,
        "Name of the target (its comm or executable name); found again if it restarts.",
        Some("my-go-app"),
    ),
    flag(
        "target-container",
        "NAME",
        None,
        "The target container's name: a label of headroom_target_info, for joins with cAdvisor and kube-state-metrics.",
        Some("app"),
    ),
    flag(
        "cgroup",
        "auto|PATH",
        Some("auto"),
        "The memory cgroup to read: `auto` (the target's, else our own) or a directory (absolute, or relative to --cgroup-root).",
        Some("/sys/fs/cgroup/memory/kubepods/pod1/ctr"),
    ),
    flag("cgroup-root", "PATH", Some("/sys/fs/cgroup"), "Where cgroupfs is mounted.", None),
    flag("proc-root", "PATH", Some("/proc"), "Where procfs is mounted.", None),
    flag(
        "go-url",
        "URL",
        None,
        "The target's expvar JSON (/debug/vars), Prometheus text (/metrics) or text heap profile (/debug/pprof/heap?debug=1), told apart by content.",
        Some("http://127.0.0.1:6060/debug/vars"),
    ),
    flag(
        "go-interval",
        "DUR",
        Some("5s"),
        "Go scrape period; an expvar scrape stops the target's world, so keep it rarer than --interval. The pprof page is scraped at most every 15s.",
        None,
    ),
    flag(
        "smaps-interval",
        "DUR",
        Some("30s"),
        "Period for /proc/PID/smaps_rollup (LazyFree); it walks the target's whole memory map (~10 ms at 500 MiB).",
        None,
    ),
    flag(
        "memory-limit",
        "BYTES",
        None,
        "Override the limit, for platforms that kill below the cgroup limit.",
        Some("3GiB"),
    ),
    flag(
        "limit-basis",
        "BASIS",
        Some("unreclaimable"),
        "What the killer measures: unreclaimable (kernel OOM), working_set (kubelet), usage (cgroup usage), rss (the target's RSS, as platform killers do).",
        None,
    ),
    flag(
        "log-format",
        "FORMAT",
        Some("text"),
        "Log format: text or json.",
        None,
    ),
    flag(
        "log-level",
        "LEVEL",
        None,
        "Log level: error, warn, info, debug or trace. Default info (warn for check). When given (as the flag, HEADROOM_LOG_LEVEL or in the file) it wins over RUST_LOG; without it, RUST_LOG, when set, filters the logs as usual (per-module directives: headroom=debug,hyper=warn).",
        Some("debug"),
    ),
    flag("warn-within", "DUR", Some("30m"), "Warn when OOM is predicted within this.", None),
    flag("critical-within", "DUR", Some("5m"), "Critical when OOM is predicted within this.", None),
    flag(
        "alertmanager-url",
        "URL",
        None,
        "Push alerts to Alertmanager's v2 API.",
        Some("http://alertmanager:9093"),
    ),
    flag(
        "webhook-url",
        "URL",
        None,
        "POST a JSON alert on every risk change.",
        Some("https://hooks.example/headroom"),
    ),
    flag(
        "alertmanager-auth-file",
        "FILE",
        None,
        "Authorization for --alertmanager-url, read before each send (a mounted Secret): `user:password` (basic auth), `Bearer TOKEN` or `Basic B64` as given, else the whole file is a bearer token.",
        Some("/etc/headroom/alertmanager-token"),
    ),
    flag(
        "webhook-auth-file",
        "FILE",
        None,
        "Authorization for --webhook-url, in the same forms as --alertmanager-auth-file.",
        None,
    ),
    flag(
        "alert-ca-file",
        "FILE",
        None,
        "PEM CA certificates trusted for https alert receivers besides the built-in roots (a private CA).",
        None,
    ),
    flag(
        "auth-file",
        "FILE",
        None,
        "Credentials the dashboard, /api/ and /profiles/ require (heap profiles hold the target's memory): a file (a mounted Secret) holding `user:password` (basic auth, which a browser asks for), `Bearer TOKEN` or a bare token; read again when it changes. /healthz and /readyz stay open, /metrics too unless --auth-metrics.",
        Some("/etc/headroom/auth/credentials"),
    ),
    flag(
        "auth-metrics",
        "BOOL",
        Some("false"),
        "Require --auth-file's credentials on /metrics too (then give Prometheus the same credentials).",
        Some("true"),
    ),
    flag(
        "alert-label",
        "K=V,...",
        None,
        "Static labels added to every pushed alert (Alertmanager and webhook), e.g. the cluster's name, as the rules' external labels would be: `cluster=prod,region=eu-west-1`. Not alertname, severity, namespace, pod or container.",
        Some("cluster=prod"),
    ),
    flag(
        "runbook-base-url",
        "URL",
        Some(DEFAULT_RUNBOOK_BASE),
        "Where the runbook (docs/troubleshooting.md) is published: pushed alerts carry runbook_url = this + troubleshooting.md#<section>, as the shipped rules do.",
        Some("https://docs.example.com/headroom/docs/"),
    ),
    flag(
        "profile-dir",
        "DIR",
        None,
        "Save the target's /debug/pprof/heap here when risk rises (and /debug/pprof/goroutine beside it with a goroutine leak).",
        Some("/var/lib/headroom"),
    ),
    flag(
        "pprof-url",
        "URL",
        None,
        "Where the target serves /debug/pprof/heap. Default: --go-url's host.",
        None,
    ),
];

/// Where the runbook is published by default: the docs of the source tree.
pub const DEFAULT_RUNBOOK_BASE: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/blob/main/docs/");

/// Labels a pushed alert sets itself; `--alert-label` may not set them.
pub const RESERVED_ALERT_LABELS: &[&str] = &["alertname", "severity", "namespace", "pod", "container", "process"];

/// The settings of `headroom node` alone.
pub const NODE_FLAGS: &[Flag] = &[
    flag(
        "cri-socket",
        "PATH",
        Some("auto"),
        "The container runtime's CRI socket, for namespace, pod and container names, the pods' `headroom.dev/go-url` annotations and how containers ended: `auto` (containerd's /run/containerd/containerd.sock, then CRI-O's /run/crio/crio.sock, each also under /host), `none`, or a path. Without one, targets are keyed by pod UID and the container ID's first 12 hex digits, and no Go endpoint is known.",
        Some("/run/containerd/containerd.sock"),
    ),
    flag(
        "all-containers",
        "BOOL",
        Some("false"),
        "Watch non-Go containers too (their cgroup only); by default only containers running a Go program are watched.",
        Some("true"),
    ),
    flag(
        "enter-netns",
        "BOOL",
        Some("true"),
        "Scrape a Go endpoint annotated with a loopback URL (`headroom.dev/go-url: http://127.0.0.1:6060/debug/vars`) from inside the pod's network namespace (setns into /proc/PID/ns/net; needs CAP_SYS_ADMIN). false: loopback URLs are left unscraped unless the pod uses the host's network; other URLs are dialled as they are.",
        Some("false"),
    ),
    flag(
        "max-targets",
        "N",
        Some("500"),
        "Watch at most this many containers; the others are counted in headroom_targets{state=\"over_limit\"} and logged.",
        Some("200"),
    ),
];

/// The settings about one target, which `headroom node` does not take (it
/// finds its targets itself).
pub const TARGET_ONLY: &[&str] = &[
    "pid",
    "process",
    "target-container",
    "cgroup",
    "go-url",
    "memory-limit",
    "pprof-url",
];

/// Node mode polls every container this often unless `--interval` says
/// otherwise.
pub const NODE_DEFAULT_INTERVAL: &str = "5s";

/// Every key of `run` and `check` the map (and the TOML file) may hold, in
/// flag spelling; node mode's own are [`NODE_FLAGS`].
pub const KEYS: [&str; FLAGS.len()] = {
    let mut keys = [""; FLAGS.len()];
    let mut i = 0;
    while i < FLAGS.len() {
        keys[i] = FLAGS[i].name;
        i += 1;
    }
    keys
};

/// A key of the TOML file or the map: a setting of `run` or of `node`.
fn is_key(key: &str) -> bool {
    KEYS.contains(&key) || NODE_FLAGS.iter().any(|f| f.name == key)
}

fn default_of(key: &str) -> Option<&'static str> {
    FLAGS
        .iter()
        .chain(NODE_FLAGS)
        .find(|f| f.name == key)
        .and_then(|f| f.default)
}

const ABOUT: &str = "Predicts a Go service's OOM kill and says why its memory grows.";
const LONG_ABOUT: &str = "headroom watches one Go process and the memory cgroup the kernel charges it to, \
exports Prometheus metrics, JSON status and a dashboard, and tells how close the container is to its \
memory limit.\n\nEvery flag can also be set as env HEADROOM_<FLAG> (e.g. HEADROOM_GO_URL) or as a \
key in the TOML file given with --config (e.g. go-url = \"http://127.0.0.1:6060/debug/vars\"). \
Flags win over env, env over the file.\n\nExamples:\n  headroom run --process my-go-app --go-url http://127.0.0.1:6060/debug/vars\n  headroom check --pid 1234 --for 30s";

fn flag_arg(f: &Flag) -> Arg {
    Arg::new(f.name)
        .long(f.name)
        .value_name(f.value_name)
        .env(f.env())
        .help(f.help_text())
}

fn config_arg() -> Arg {
    Arg::new("config")
        .long("config")
        .value_name("FILE")
        .env("HEADROOM_CONFIG")
        .help("TOML file with any of these flags as keys (go-url = \"...\").")
}

const NODE_ABOUT: &str = "Run as a node agent (a DaemonSet): watch every container on this node.\n\n\
Containers are found in the memory cgroup tree under --cgroup-root, in the kubelet's layouts (cgroupfs \
and systemd drivers, cgroup v1 and v2, containerd, CRI-O and docker); within each, the Go processes are \
found by their ELF build info. Each container is polled on its own, every --interval (default 5s), and \
its series carry the labels namespace, pod and container. Needs the host's PID namespace (hostPID) and \
its cgroupfs mounted read-only.\n\nExamples:\n  headroom node --cgroup-root /host/sys/fs/cgroup\n  \
headroom node --all-containers --max-targets 200";

/// The settings' flags, shared by `run`, `check` and the bare command.
fn setting_args() -> Vec<Arg> {
    let mut args = vec![config_arg()];
    args.extend(FLAGS.iter().map(flag_arg));
    args
}

/// `headroom node`'s flags: those of `run` that are not about one target,
/// and its own.
fn node_args() -> Vec<Arg> {
    let mut args = vec![config_arg().help("TOML file with any of these flags as keys (all-containers = true).")];
    args.extend(
        FLAGS
            .iter()
            .filter(|f| !TARGET_ONLY.contains(&f.name))
            .map(|f| match f.name {
                "listen" => flag_arg(f).help(
                    "HTTP address for /metrics, /api/v1/targets and the dashboard. Default 0.0.0.0:9184. Example: --listen 127.0.0.1:9184",
                ),
                "interval" => flag_arg(f).help(
                    "Poll period of each container's cgroup and /proc, and of the discovery of containers. Default 5s in node mode.",
                ),
                _ => flag_arg(f),
            }),
    );
    args.extend(NODE_FLAGS.iter().map(flag_arg));
    args
}

/// The command line, built from [`FLAGS`].
pub fn command() -> clap::Command {
    clap::Command::new("headroom")
        .version(crate::build_info::VERSION_LINE)
        .about(ABOUT)
        .long_about(LONG_ABOUT)
        .args(setting_args())
        .subcommand(
            clap::Command::new("run")
                .about("Run the daemon (the default): poll, serve /metrics, /api/v1/status and /.")
                .args(setting_args()),
        )
        .subcommand(
            clap::Command::new("node")
                .about(
                    "Run as a node agent (a DaemonSet): watch every Go container on this node, found in the memory cgroup tree (kubelet layouts, cgroup v1 and v2).",
                )
                .long_about(NODE_ABOUT)
                .args(node_args()),
        )
        .subcommand(
            clap::Command::new("check")
                .about(
                    "One-shot report to stdout. Exit 0: no risk; 1: warning; 2: critical; 3: could not read the target; 64: bad flags.",
                )
                .args(setting_args())
                .arg(
                    Arg::new("for")
                        .long("for")
                        .value_name("DUR")
                        .help("Sample for this long before reporting, to show growth. Example: --for 30s"),
                )
                .arg(
                    Arg::new("json")
                        .long("json")
                        .action(ArgAction::SetTrue)
                        .help("Print JSON instead of the table."),
                ),
        )
        .subcommand(status_command())
        .subcommand(
            clap::Command::new("completions")
                .about("Print shell completions to stdout: bash, zsh, fish, elvish or powershell.")
                .long_about(COMPLETIONS_ABOUT)
                .arg(
                    Arg::new("shell")
                        .value_name("SHELL")
                        .required(true)
                        .value_parser(clap::value_parser!(clap_complete::Shell))
                        .help("The shell to complete for."),
                ),
        )
        .subcommand(
            clap::Command::new("man")
                .about("Print the man page (roff) to stdout; with a COMMAND, that subcommand's page.")
                .long_about(MAN_ABOUT)
                .arg(
                    Arg::new("command")
                        .value_name("COMMAND")
                        .help("A subcommand (run, node, check, ...): its page, headroom-COMMAND(1)."),
                ),
        )
        .subcommand(crate::inject::command())
}

const STATUS_ABOUT: &str = "A running daemon's view: verdict, time to OOM, causes with advice, OOM kills, limits to \
set. Exit 0: ok; 1: warning; 2: critical; 3: cannot reach it, or not headroom; 64: bad flags.";
const STATUS_LONG_ABOUT: &str = "Ask a running headroom daemon for its view: the verdict, the time to OOM, the causes \
with their advice, the OOM kills and the limits to set, as a table, or the daemon's status JSON with --json.\n\n\
By default it asks the local daemon: http://127.0.0.1 at the port of the daemon's --listen as this environment sets it \
(HEADROOM_LISTEN, else the `listen` key of the HEADROOM_CONFIG file), else port 9184. So in a pod, \
`kubectl exec POD -c headroom -- headroom status` asks the sidecar beside it.\n\n\
Against a node agent (`headroom node`) it lists the node's targets, most at risk first (--json: /api/v1/targets); \
--target NAMESPACE/POD/CONTAINER shows one of them.\n\n\
Exit status: 0 no risk; 1 warning; 2 critical (the daemon's risk; for a node agent without --target, the highest of its \
targets' that are not gone); 3 the daemon cannot be reached, answered an error, or is not headroom; 64 bad flags.\n\n\
Examples:\n  headroom status\n  headroom status --json\n  headroom status --url http://10.0.0.7:9184 --target shop/cart-7d9f8b6c5-x2x9q/app";
const COMPLETIONS_ABOUT: &str = "Print shell completions to stdout: bash, zsh, fish, elvish or powershell.\n\n\
Examples:\n  headroom completions bash > /etc/bash_completion.d/headroom\n  \
headroom completions zsh > \"${fpath[1]}/_headroom\"\n  headroom completions fish > ~/.config/fish/completions/headroom.fish";
const MAN_ABOUT: &str = "Print the man page (roff) to stdout: headroom(1), or with a COMMAND that subcommand's page, \
headroom-COMMAND(1).\n\nExamples:\n  headroom man | man -l -\n  \
headroom man node > /usr/local/share/man/man1/headroom-node.1";

/// The default address `headroom status` asks, when the environment does
/// not say where the daemon listens.
pub const STATUS_DEFAULT_URL: &str = "http://127.0.0.1:9184";

fn status_command() -> clap::Command {
    clap::Command::new("status")
        .about(STATUS_ABOUT)
        .long_about(STATUS_LONG_ABOUT)
        .arg(
            Arg::new("url")
                .long("url")
                .value_name("URL")
                .help("The daemon's address. Default: the local daemon, http://127.0.0.1 at the port of HEADROOM_LISTEN (else 9184). Example: --url http://10.0.0.7:9184"),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .action(ArgAction::SetTrue)
                .help("Print the daemon's JSON (/api/v1/status; for a node agent /api/v1/targets) instead of the table."),
        )
        .arg(
            Arg::new("target")
                .long("target")
                .value_name("NAMESPACE/POD/CONTAINER")
                .help("One target of a node agent, as its targets table names it (an empty namespace as _). Example: --target shop/cart-7d9f8b6c5-x2x9q/app"),
        )
}

/// What `headroom status` asks, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusArgs {
    /// The daemon's base URL, without a trailing slash.
    pub url: String,
    /// Where the URL came from, for error messages (`--url`, the default,
    /// `HEADROOM_LISTEN=...`).
    pub url_from: String,
    pub json: bool,
    pub target: Option<crate::key::TargetKey>,
}

/// `headroom status`'s arguments; `env` reads the environment (tests pass
/// a map). Every bad argument is reported at once.
fn status_args(m: &ArgMatches, env: impl Fn(&str) -> Option<String>) -> Result<StatusArgs, Vec<String>> {
    let mut errors = Vec::new();
    let (url, url_from) = match m.get_one::<String>("url") {
        Some(u) => match base_url(u) {
            Some(b) => (b, "--url".to_owned()),
            None => {
                errors.push(format!(
                    "--url {u:?}: expected the daemon's http:// or https:// address such as http://127.0.0.1:9184"
                ));
                (String::new(), String::new())
            }
        },
        None => local_daemon_url(env).unwrap_or_else(|e| {
            errors.push(e);
            (String::new(), String::new())
        }),
    };
    let target = m.get_one::<String>("target").and_then(|t| {
        let parts: Vec<&str> = t.split('/').collect();
        match parts[..] {
            [ns, pod, container] if !ns.is_empty() && !pod.is_empty() && !container.is_empty() => {
                Some(crate::key::TargetKey::from_segments(ns, pod, container))
            }
            _ => {
                errors.push(format!(
                    "--target {t:?}: expected NAMESPACE/POD/CONTAINER as `headroom status` lists them (an empty namespace as _)"
                ));
                None
            }
        }
    });
    if errors.is_empty() {
        Ok(StatusArgs {
            url,
            url_from,
            json: m.get_flag("json"),
            target,
        })
    } else {
        Err(errors)
    }
}

/// An http(s) URL with a host, without trailing slashes; `None` otherwise.
fn base_url(u: &str) -> Option<String> {
    let u = u.trim().trim_end_matches('/');
    match u.parse::<axum::http::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => Some(u.to_owned()),
        _ => None,
    }
}

/// The local daemon's URL and where it came from: the port of its
/// `--listen` as the environment sets it (HEADROOM_LISTEN, else the
/// `listen` key of the HEADROOM_CONFIG file), on loopback when it listens
/// on every address; else [`STATUS_DEFAULT_URL`].
fn local_daemon_url(env: impl Fn(&str) -> Option<String>) -> Result<(String, String), String> {
    let (listen, from) = match env("HEADROOM_LISTEN").filter(|l| !l.trim().is_empty()) {
        Some(l) => (l.trim().to_owned(), "HEADROOM_LISTEN".to_owned()),
        None => match env("HEADROOM_CONFIG").and_then(|f| {
            let map = read_config_file(Path::new(&f)).ok()?;
            Some((map.get("listen")?.trim().to_owned(), format!("listen in {f}")))
        }) {
            Some(found) => found,
            None => return Ok((STATUS_DEFAULT_URL.to_owned(), "the default".to_owned())),
        },
    };
    let addr: SocketAddr = listen.parse().map_err(|_| {
        format!("{from} {listen:?}: expected HOST:PORT such as 0.0.0.0:9184; or give the daemon's address with --url")
    })?;
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok((
        format!("http://{}", SocketAddr::new(ip, addr.port())),
        format!("{from}={listen}"),
    ))
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    Run(Config),
    /// `headroom node`: the daemon settings and the template every
    /// discovered target starts from.
    Node(NodeConfig),
    Check {
        config: Config,
        sample_for: Duration,
        json: bool,
    },
    /// `headroom status`: ask a running daemon.
    Status(StatusArgs),
    /// `headroom completions SHELL`.
    Completions(clap_complete::Shell),
    /// `headroom man [COMMAND]`: the command's name (`headroom` or a
    /// subcommand's).
    Man(Option<String>),
    /// `headroom inject`: Kubernetes YAML in, with the sidecar out.
    Inject(crate::inject::InjectCommand),
}

/// Why the command line was not accepted.
#[derive(Debug)]
pub enum CliError {
    /// clap's own answer: help and version (exit 0) or a usage error.
    Clap(clap::Error),
    /// Every bad setting, each naming the flag, the value and what is allowed.
    Invalid(Vec<String>),
}

/// Parses the command line (and the env, and the `--config` file).
pub fn parse_args<I, T>(args: I) -> Result<Invocation, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let m = command().try_get_matches_from(args).map_err(CliError::Clap)?;
    let (sub, check) = match m.subcommand() {
        Some(("status", sub)) => {
            return status_args(sub, |k| std::env::var(k).ok())
                .map(Invocation::Status)
                .map_err(CliError::Invalid)
        }
        Some(("completions", sub)) => {
            let shell = sub.get_one::<clap_complete::Shell>("shell").expect("required by clap");
            return Ok(Invocation::Completions(*shell));
        }
        Some(("man", sub)) => {
            let name = sub.get_one::<String>("command").cloned();
            if let Some(n) = &name {
                let cmd = command();
                if cmd.find_subcommand(n).is_none() {
                    let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
                    return Err(CliError::Invalid(vec![format!(
                        "man {n:?}: no such command; one of {}",
                        names.join(", ")
                    )]));
                }
            }
            return Ok(Invocation::Man(name));
        }
        Some(("check", sub)) => (sub, true),
        Some(("inject", sub)) => {
            return crate::inject::InjectCommand::from_matches(sub)
                .map(Invocation::Inject)
                .map_err(CliError::Invalid);
        }
        Some(("node", sub)) => {
            let mut map = merged_map(sub).map_err(CliError::Invalid)?;
            return NodeConfig::from_map(&mut map)
                .map(Invocation::Node)
                .map_err(CliError::Invalid);
        }
        Some((_, sub)) => (sub, false),
        None => (&m, false),
    };
    let map = merged_map(sub).map_err(CliError::Invalid)?;
    let config = Config::from_map(&map);
    if !check {
        return config.map(Invocation::Run).map_err(CliError::Invalid);
    }
    let sample_for = match sub.get_one::<String>("for").map(|s| (s, humantime::parse_duration(s))) {
        None => Ok(Duration::ZERO),
        Some((_, Ok(d))) => Ok(d),
        Some((s, Err(e))) => Err(format!("--for {s:?}: {e}; expected a duration such as 30s")),
    };
    match (config, sample_for) {
        (Ok(config), Ok(sample_for)) => Ok(Invocation::Check {
            config,
            sample_for,
            json: sub.get_flag("json"),
        }),
        (config, sample_for) => {
            let mut errors = config.err().unwrap_or_default();
            errors.extend(sample_for.err());
            Err(CliError::Invalid(errors))
        }
    }
}

/// The values given as flags or env, keyed by flag name.
fn args_map(m: &ArgMatches) -> BTreeMap<String, String> {
    FLAGS
        .iter()
        .chain(NODE_FLAGS)
        .filter(|f| m.try_get_one::<String>(f.name).is_ok())
        .filter_map(|f| m.get_one::<String>(f.name).map(|v| (f.name.to_owned(), v.clone())))
        .collect()
}

/// Flags/env over the file's values; `Err` lists every problem.
fn merged_map(m: &ArgMatches) -> Result<BTreeMap<String, String>, Vec<String>> {
    let mut map = match m.get_one::<String>("config") {
        Some(path) => read_config_file(Path::new(path))?,
        None => BTreeMap::new(),
    };
    map.extend(args_map(m));
    Ok(map)
}

/// Reads a TOML config file into the raw map. Keys may be spelled like the
/// flags (`go-url`) or in snake case (`go_url`).
pub fn read_config_file(path: &Path) -> Result<BTreeMap<String, String>, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("--config {}: {e}", path.display())])?;
    parse_config_toml(&text).map_err(|errs| {
        errs.into_iter()
            .map(|e| format!("--config {}: {e}", path.display()))
            .collect()
    })
}

pub fn parse_config_toml(text: &str) -> Result<BTreeMap<String, String>, Vec<String>> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| vec![e.message().to_owned()])?;
    let mut map = BTreeMap::new();
    let mut errors = Vec::new();
    for (key, value) in table {
        let flag = key.replace('_', "-");
        if !is_key(&flag) {
            let node: Vec<&str> = NODE_FLAGS.iter().map(|f| f.name).collect();
            errors.push(format!(
                "unknown key {key:?}; known keys: {}, and for `headroom node` {}",
                KEYS.join(", "),
                node.join(", ")
            ));
            continue;
        }
        let v = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                errors.push(format!(
                    "key {key:?}: expected a string, an integer or a boolean, found {}",
                    other.type_str()
                ));
                continue;
            }
        };
        map.insert(flag, v);
    }
    if errors.is_empty() {
        Ok(map)
    } else {
        Err(errors)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `--log-level`: the level of every log line (as `RUST_LOG=LEVEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub const NAMES: &'static str = "error, warn, info, debug, trace";

    pub fn parse(s: &str) -> Option<LogLevel> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Some(LogLevel::Error),
            "warn" => Some(LogLevel::Warn),
            "info" => Some(LogLevel::Info),
            "debug" => Some(LogLevel::Debug),
            "trace" => Some(LogLevel::Trace),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Which process to watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Pid(u32),
    Process(String),
    /// No target: our own cgroup (and no /proc target).
    Own,
}

/// Validated configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub listen: SocketAddr,
    pub interval: Duration,
    pub window: Duration,
    pub target: Target,
    pub target_container: Option<String>,
    /// `None` = auto.
    pub cgroup: Option<PathBuf>,
    pub cgroup_root: PathBuf,
    pub proc_root: PathBuf,
    pub go_url: Option<String>,
    pub go_interval: Duration,
    pub smaps_interval: Duration,
    pub memory_limit: Option<Limit>,
    pub limit_basis: LimitBasis,
    pub log_format: LogFormat,
    /// `--log-level`; `None` when not given (RUST_LOG, else the mode's default).
    pub log_level: Option<LogLevel>,
    pub warn_within: Duration,
    pub critical_within: Duration,
    pub alertmanager_url: Option<String>,
    pub webhook_url: Option<String>,
    pub alertmanager_auth_file: Option<PathBuf>,
    pub webhook_auth_file: Option<PathBuf>,
    pub alert_ca_file: Option<PathBuf>,
    pub profile_dir: Option<PathBuf>,
    pub pprof_url: Option<String>,
    pub alert_labels: BTreeMap<String, String>,
    pub runbook_base: String,
    pub auth_file: Option<PathBuf>,
    pub auth_metrics: bool,
}

/// What to watch and how: one target's settings. The sidecar has one, from
/// its flags; node mode makes one per discovered container from a template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetConfig {
    pub target: Target,
    /// The watched container's name, where known.
    pub container: Option<String>,
    /// `None` = auto.
    pub cgroup: Option<PathBuf>,
    pub cgroup_root: PathBuf,
    pub proc_root: PathBuf,
    pub go_url: Option<String>,
    pub pprof_url: Option<String>,
    pub go_interval: Duration,
    pub interval: Duration,
    pub smaps_interval: Duration,
    pub window: Duration,
    pub warn_within: Duration,
    pub critical_within: Duration,
    pub memory_limit: Option<Limit>,
    pub limit_basis: LimitBasis,
    /// The target appeared after headroom started (a container found by a
    /// later discovery round): the OOM kills its cgroup shows at the first
    /// read happened since, and count. Otherwise they are from before
    /// headroom started, shown in the status and not counted.
    pub appeared_after_start: bool,
    /// The network namespace the Go URL is dialled in (`/proc/PID/ns/net`):
    /// a pod's loopback endpoint reached by the node agent.
    pub go_netns: Option<PathBuf>,
}

impl TargetConfig {
    /// The analysis' settings.
    pub fn analysis_config(&self) -> AnalysisConfig {
        AnalysisConfig {
            window_ms: self.window.as_millis() as u64,
            warn_within_s: self.warn_within.as_secs_f64(),
            critical_within_s: self.critical_within.as_secs_f64(),
            thresholds: Default::default(),
        }
    }

    /// Where the target serves `/debug/pprof/heap`: `--pprof-url`, else
    /// the Go URL's host.
    pub fn pprof_url(&self) -> Option<String> {
        self.pprof_url
            .clone()
            .or_else(|| self.go_url.as_deref().and_then(crate::source::go::pprof_url_from))
    }
}

/// The daemon's own settings, shared by every target: where it listens,
/// how it logs, where alerts go.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaemonConfig {
    pub listen: SocketAddr,
    /// The poll period; `/healthz` fails after a few of them without a poll.
    pub interval: Duration,
    pub log_format: LogFormat,
    pub log_level: Option<LogLevel>,
    pub alertmanager_url: Option<String>,
    pub webhook_url: Option<String>,
    pub alertmanager_auth_file: Option<PathBuf>,
    pub webhook_auth_file: Option<PathBuf>,
    pub alert_ca_file: Option<PathBuf>,
    pub profile_dir: Option<PathBuf>,
    /// `--alert-label`: added to every pushed alert.
    pub alert_labels: BTreeMap<String, String>,
    /// `--runbook-base-url`, ending in `/`.
    pub runbook_base: String,
    /// `--auth-file`: what the endpoints but the probes (and /metrics,
    /// unless `auth_metrics`) require.
    pub auth_file: Option<PathBuf>,
    pub auth_metrics: bool,
}

/// Where `headroom node` asks for pod and container names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CriSocket {
    Auto,
    None,
    Path(PathBuf),
}

/// `headroom node`: the daemon, the template each discovered container's
/// [`TargetConfig`] starts from, and how discovery behaves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeConfig {
    pub daemon: DaemonConfig,
    pub template: TargetConfig,
    pub cri_socket: CriSocket,
    pub all_containers: bool,
    /// Loopback Go URLs are dialled inside the pod's network namespace.
    pub enter_netns: bool,
    pub max_targets: usize,
}

impl NodeConfig {
    /// Validates node mode's map: the settings of `run` that are not about
    /// one target, with `--interval` defaulting to
    /// [`NODE_DEFAULT_INTERVAL`], and node mode's own.
    pub fn from_map(map: &mut BTreeMap<String, String>) -> Result<NodeConfig, Vec<String>> {
        let mut errors: Vec<String> = map
            .keys()
            .filter(|k| TARGET_ONLY.contains(&k.as_str()))
            .map(|k| format!("--{k} is about one target; `headroom node` finds its targets itself"))
            .collect();
        map.entry("interval".into())
            .or_insert_with(|| NODE_DEFAULT_INTERVAL.into());
        let node_only: BTreeMap<String, String> = NODE_FLAGS
            .iter()
            .filter_map(|f| map.remove(f.name).map(|v| (f.name.to_owned(), v)))
            .collect();
        let run_map: BTreeMap<String, String> = map
            .iter()
            .filter(|(k, _)| !TARGET_ONLY.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let config = Config::from_map(&run_map);
        let get = |k: &str| {
            node_only
                .get(k)
                .map(|s| s.trim().to_owned())
                .or_else(|| default_of(k).map(str::to_owned))
                .unwrap_or_default()
        };
        let cri = get("cri-socket");
        let cri_socket = match cri.as_str() {
            "auto" => CriSocket::Auto,
            "none" => CriSocket::None,
            "" => {
                errors.push("--cri-socket \"\": expected auto, none or a socket path".into());
                CriSocket::None
            }
            p => CriSocket::Path(PathBuf::from(p)),
        };
        let mut boolean = |name: &str| {
            let v = get(name);
            match v.as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    errors.push(format!("--{name} {v:?}: expected true or false"));
                    false
                }
            }
        };
        let all_containers = boolean("all-containers");
        let enter_netns = boolean("enter-netns");
        let max = get("max-targets");
        let max_targets = match max.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                errors.push(format!("--max-targets {max:?}: expected a positive number such as 200"));
                0
            }
        };
        match config {
            Ok(c) if errors.is_empty() => Ok(NodeConfig {
                daemon: c.daemon_config(),
                template: c.target_config(),
                cri_socket,
                all_containers,
                enter_netns,
                max_targets,
            }),
            Ok(_) => Err(errors),
            Err(mut e) => {
                e.extend(errors);
                Err(e)
            }
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::from_map(&BTreeMap::new()).expect("defaults are valid")
    }
}

struct Validator<'a> {
    map: &'a BTreeMap<String, String>,
    errors: Vec<String>,
}

impl Validator<'_> {
    fn raw(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(|s| s.trim())
    }

    fn fail(&mut self, key: &str, value: &str, allowed: &str) {
        self.errors.push(format!("--{key} {value:?}: {allowed}"));
    }

    /// The value given, else the table's default.
    fn value(&self, key: &str) -> Option<String> {
        self.raw(key).or_else(|| default_of(key)).map(str::to_owned)
    }

    fn duration(&mut self, key: &str, min: Duration) -> Duration {
        let v = self.value(key).unwrap_or_default();
        match humantime::parse_duration(&v) {
            Ok(d) if d >= min => d,
            Ok(_) => {
                self.fail(
                    key,
                    &v,
                    &format!("must be at least {}", humantime::format_duration(min)),
                );
                Duration::ZERO
            }
            Err(e) => {
                self.fail(key, &v, &format!("{e}; expected a duration such as 500ms, 5s, 10m"));
                Duration::ZERO
            }
        }
    }

    /// An http:// or https:// URL: an alert receiver, anywhere.
    fn receiver_url(&mut self, key: &str) -> Option<String> {
        let v = self.raw(key)?.to_owned();
        match v.parse::<axum::http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => Some(v),
            _ => {
                // Shown redacted: a receiver URL's path or userinfo may be its secret.
                self.fail(
                    key,
                    &crate::httpc::redact_url(&v),
                    "expected an http:// or https:// URL such as https://alertmanager.example:9093",
                );
                None
            }
        }
    }

    /// A file that must be readable (a credential, a CA bundle).
    fn readable_file(&mut self, key: &str) -> Option<PathBuf> {
        let v = self.raw(key)?.to_owned();
        match std::fs::File::open(&v) {
            Ok(_) => Some(PathBuf::from(v)),
            Err(e) => {
                self.fail(key, &v, &format!("cannot read it: {e}"));
                None
            }
        }
    }

    /// `K=V,K=V`: Prometheus label names, none reserved, values non-empty.
    fn alert_labels(&mut self, key: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(raw) = self.raw(key).map(str::to_owned) else {
            return out;
        };
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, val)) = part.split_once('=').map(|(k, v)| (k.trim(), v.trim())) else {
                self.fail(key, part, "expected KEY=VALUE, e.g. cluster=prod");
                continue;
            };
            let name_ok = k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !k.starts_with("__");
            if !name_ok {
                self.fail(
                    key,
                    part,
                    "a label name is letters, digits and _, not starting with a digit or __",
                );
            } else if RESERVED_ALERT_LABELS.contains(&k) {
                self.fail(key, part, "headroom sets this label itself");
            } else if val.is_empty() {
                self.fail(key, part, "the value is empty");
            } else {
                out.insert(k.to_owned(), val.to_owned());
            }
        }
        out
    }

    /// An absolute http(s) URL, given a trailing `/`.
    fn runbook_base(&mut self, key: &str) -> String {
        let v = self.value(key).unwrap_or_default();
        match v.parse::<axum::http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
                if v.ends_with('/') {
                    v
                } else {
                    format!("{v}/")
                }
            }
            _ => {
                self.fail(key, &v, "expected an absolute http:// or https:// URL");
                String::new()
            }
        }
    }

    /// An http:// URL of the target, beside us in the pod.
    fn url(&mut self, key: &str) -> Option<String> {
        let v = self.raw(key)?.to_owned();
        match v.parse::<axum::http::Uri>() {
            Ok(u) if u.scheme_str() == Some("http") && u.host().is_some() => Some(v),
            Ok(u) if u.scheme_str() == Some("https") => {
                self.fail(
                    key,
                    &v,
                    "https is not supported; expected an http:// URL (the target is beside us in the pod)",
                );
                None
            }
            _ => {
                self.fail(
                    key,
                    &v,
                    "expected an http:// URL such as http://127.0.0.1:6060/debug/vars",
                );
                None
            }
        }
    }

    fn dir(&mut self, key: &str) -> PathBuf {
        let v = self.value(key).unwrap_or_default();
        let p = PathBuf::from(&v);
        if !p.is_dir() {
            self.fail(key, &v, "no such directory");
        }
        // Absolute, so paths found under it (node discovery, /proc's
        // cgroup lines) are never joined to it a second time.
        std::path::absolute(&p).unwrap_or(p)
    }
}

impl Config {
    /// The one target's settings.
    pub fn target_config(&self) -> TargetConfig {
        TargetConfig {
            target: self.target.clone(),
            container: self.target_container.clone(),
            cgroup: self.cgroup.clone(),
            cgroup_root: self.cgroup_root.clone(),
            proc_root: self.proc_root.clone(),
            go_url: self.go_url.clone(),
            pprof_url: self.pprof_url.clone(),
            go_interval: self.go_interval,
            interval: self.interval,
            smaps_interval: self.smaps_interval,
            window: self.window,
            warn_within: self.warn_within,
            critical_within: self.critical_within,
            memory_limit: self.memory_limit,
            limit_basis: self.limit_basis,
            appeared_after_start: false,
            go_netns: None,
        }
    }

    /// The daemon's own settings.
    pub fn daemon_config(&self) -> DaemonConfig {
        DaemonConfig {
            listen: self.listen,
            interval: self.interval,
            log_format: self.log_format,
            log_level: self.log_level,
            alertmanager_url: self.alertmanager_url.clone(),
            webhook_url: self.webhook_url.clone(),
            alertmanager_auth_file: self.alertmanager_auth_file.clone(),
            webhook_auth_file: self.webhook_auth_file.clone(),
            alert_ca_file: self.alert_ca_file.clone(),
            profile_dir: self.profile_dir.clone(),
            alert_labels: self.alert_labels.clone(),
            runbook_base: self.runbook_base.clone(),
            auth_file: self.auth_file.clone(),
            auth_metrics: self.auth_metrics,
        }
    }

    /// Validates a raw map of flag name → value; `Err` holds every problem,
    /// each naming the flag, the value and what is allowed.
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Config, Vec<String>> {
        let mut v = Validator {
            map,
            errors: Vec::new(),
        };
        for key in map.keys() {
            if NODE_FLAGS.iter().any(|f| f.name == key) {
                v.errors.push(format!(
                    "--{key} is a setting of `headroom node`, not of a single target"
                ));
            } else if !is_key(key) {
                v.errors.push(format!("unknown setting {key:?}"));
            }
        }
        let listen_raw = v.value("listen").unwrap_or_default();
        let listen = listen_raw.parse().unwrap_or_else(|_| {
            v.fail(
                "listen",
                &listen_raw,
                "expected HOST:PORT such as 0.0.0.0:9184 or 127.0.0.1:0",
            );
            SocketAddr::from(([0, 0, 0, 0], 9184))
        });
        let ms = Duration::from_millis;
        let interval = v.duration("interval", ms(50));
        let window = v.duration("window", ms(1000));
        if !interval.is_zero() && !window.is_zero() && window < interval * 3 {
            let w = v.value("window").unwrap_or_default();
            v.fail("window", &w, "must be at least three --interval periods");
        }
        let target = match (v.raw("pid").map(str::to_owned), v.raw("process").map(str::to_owned)) {
            (Some(p), Some(n)) => {
                v.errors
                    .push(format!("--pid {p:?} and --process {n:?}: give one of them, not both"));
                Target::Own
            }
            (Some(p), None) => match p.parse::<u32>() {
                Ok(pid) if pid > 0 => Target::Pid(pid),
                _ => {
                    v.fail("pid", &p, "expected a positive process ID");
                    Target::Own
                }
            },
            (None, Some(n)) if n.is_empty() || n.contains('/') => {
                v.fail(
                    "process",
                    &n,
                    "expected a process name (comm or executable file name), without a path",
                );
                Target::Own
            }
            (None, Some(n)) => Target::Process(n),
            (None, None) => Target::Own,
        };
        let cgroup = match v.value("cgroup").as_deref() {
            None | Some("auto") => None,
            Some("") => {
                v.fail("cgroup", "", "expected auto or a cgroup directory");
                None
            }
            Some(p) => Some(PathBuf::from(p)),
        };
        let cgroup_root = v.dir("cgroup-root");
        let proc_root = v.dir("proc-root");
        let go_url = v.url("go-url");
        let go_interval = v.duration("go-interval", ms(100));
        let smaps_interval = v.duration("smaps-interval", ms(1000));
        let memory_limit =
            v.raw("memory-limit")
                .map(str::to_owned)
                .and_then(|s| match s.parse::<bytesize::ByteSize>() {
                    Ok(b) if b.as_u64() > 0 => Some(Limit::Bytes(b.as_u64())),
                    _ => {
                        v.fail(
                            "memory-limit",
                            &s,
                            "expected a size in bytes such as 3GiB, 512MiB or 1073741824",
                        );
                        None
                    }
                });
        let basis_raw = v.value("limit-basis").unwrap_or_default();
        let limit_basis = LimitBasis::parse(&basis_raw).unwrap_or_else(|| {
            v.fail(
                "limit-basis",
                &basis_raw,
                &format!("expected one of {}", LimitBasis::NAMES),
            );
            LimitBasis::Unreclaimable
        });
        let lf = v.value("log-format").unwrap_or_default();
        let log_format = match lf.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                v.fail("log-format", &lf, "expected text or json");
                LogFormat::Text
            }
        };
        let log_level = v
            .raw("log-level")
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .and_then(|l| {
                let level = LogLevel::parse(&l);
                if level.is_none() {
                    v.fail("log-level", &l, &format!("expected one of {}", LogLevel::NAMES));
                }
                level
            });
        let warn_within = v.duration("warn-within", ms(1000));
        let critical_within = v.duration("critical-within", ms(1000));
        if !warn_within.is_zero() && critical_within > warn_within {
            let c = v.value("critical-within").unwrap_or_default();
            v.fail("critical-within", &c, "must not be longer than --warn-within");
        }
        let alertmanager_url = v.receiver_url("alertmanager-url");
        let webhook_url = v.receiver_url("webhook-url");
        let alertmanager_auth_file = v.readable_file("alertmanager-auth-file");
        let webhook_auth_file = v.readable_file("webhook-auth-file");
        let alert_ca_file = v.readable_file("alert-ca-file");
        for (file, url) in [
            ("alertmanager-auth-file", "alertmanager-url"),
            ("webhook-auth-file", "webhook-url"),
        ] {
            if v.raw(file).is_some() && v.raw(url).is_none() {
                v.errors.push(format!("--{file} is given without --{url}"));
            }
        }
        let pprof_url = v.url("pprof-url");
        let profile_dir = v.raw("profile-dir").map(PathBuf::from);
        let alert_labels = v.alert_labels("alert-label");
        let runbook_base = v.runbook_base("runbook-base-url");
        let auth_file = v.readable_file("auth-file");
        if let Some(f) = &auth_file {
            if let Err(e) = crate::alert::auth::read_credential(f) {
                v.fail(
                    "auth-file",
                    &f.display().to_string(),
                    &format!("not a usable credential: {e}"),
                );
            }
        }
        let auth_metrics = match v.value("auth-metrics").as_deref() {
            Some("true" | "1" | "yes") => true,
            Some("false" | "0" | "no") | None => false,
            Some(other) => {
                let other = other.to_owned();
                v.fail("auth-metrics", &other, "expected true or false");
                false
            }
        };
        if auth_metrics && auth_file.is_none() {
            v.errors.push("--auth-metrics true needs --auth-file".into());
        }
        if v.errors.is_empty() {
            Ok(Config {
                listen,
                interval,
                window,
                target,
                target_container: v.raw("target-container").filter(|s| !s.is_empty()).map(str::to_owned),
                cgroup,
                cgroup_root,
                proc_root,
                go_url,
                go_interval,
                smaps_interval,
                memory_limit,
                limit_basis,
                log_format,
                log_level,
                warn_within,
                critical_within,
                alertmanager_url,
                webhook_url,
                alertmanager_auth_file,
                webhook_auth_file,
                alert_ca_file,
                profile_dir,
                pprof_url,
                alert_labels,
                runbook_base,
                auth_file,
                auth_metrics,
            })
        } else {
            Err(v.errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn alert_labels_are_label_names_not_headrooms_own_and_the_runbook_base_absolute() {
        let c = Config::from_map(&map(&[("alert-label", " cluster=prod , region = eu-west-1,")])).unwrap();
        let want: BTreeMap<String, String> = map(&[("cluster", "prod"), ("region", "eu-west-1")]);
        assert_eq!(c.alert_labels, want);
        assert_eq!(c.runbook_base, DEFAULT_RUNBOOK_BASE);
        assert!(c.runbook_base.starts_with("https://") && c.runbook_base.ends_with('/'));
        for (bad, says) in [
            ("cluster", "KEY=VALUE"),
            ("9lives=x", "label name"),
            ("__meta=x", "label name"),
            ("severity=page", "sets this label itself"),
            ("pod=x", "sets this label itself"),
            ("team=", "empty"),
        ] {
            let e = Config::from_map(&map(&[("alert-label", bad)])).unwrap_err().join("\n");
            assert!(e.contains("--alert-label") && e.contains(says), "{bad}: {e}");
        }
        let c = Config::from_map(&map(&[("runbook-base-url", "https://docs.example/h")])).unwrap();
        assert_eq!(c.runbook_base, "https://docs.example/h/");
        let e = Config::from_map(&map(&[("runbook-base-url", "docs/")]))
            .unwrap_err()
            .join("\n");
        assert!(e.contains("--runbook-base-url") && e.contains("absolute"), "{e}");
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9184");
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.window, Duration::from_secs(600));
        assert_eq!(c.go_interval, Duration::from_secs(5));
        assert_eq!(c.smaps_interval, Duration::from_secs(30));
        assert_eq!(c.warn_within, Duration::from_secs(1800));
        assert_eq!(c.critical_within, Duration::from_secs(300));
        assert_eq!(c.limit_basis, LimitBasis::Unreclaimable);
        assert_eq!(c.target, Target::Own);
        assert_eq!(c.cgroup, None);
        assert_eq!(c.memory_limit, None);
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let errs = Config::from_map(&map(&[
            ("listen", "nope"),
            ("interval", "fast"),
            ("pid", "-3"),
            ("memory-limit", "lots"),
            ("limit-basis", "vibes"),
            ("log-format", "xml"),
            ("go-url", "ftp://x"),
            ("proc-root", "/definitely/not/here"),
        ]))
        .unwrap_err();
        let joined = errs.join("\n");
        for needle in [
            "--listen \"nope\"",
            "--interval \"fast\"",
            "--pid \"-3\"",
            "--memory-limit \"lots\"",
            "--limit-basis \"vibes\": expected one of unreclaimable, working_set, usage, rss",
            "--log-format \"xml\"",
            "--go-url \"ftp://x\"",
            "--proc-root \"/definitely/not/here\": no such directory",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
        }
        assert_eq!(errs.len(), 8, "{joined}");
    }

    #[test]
    fn relative_roots_are_made_absolute_so_found_paths_are_not_joined_twice() {
        // Unit tests run in the crate's directory: `src` exists there.
        let c = Config::from_map(&map(&[("cgroup-root", "src"), ("proc-root", "./src")])).unwrap();
        let here = std::env::current_dir().unwrap();
        assert_eq!(c.cgroup_root, here.join("src"));
        assert!(
            c.proc_root.is_absolute() && c.proc_root.ends_with("src"),
            "{:?}",
            c.proc_root
        );
        let c = Config::from_map(&map(&[])).unwrap();
        assert_eq!(c.cgroup_root, Path::new("/sys/fs/cgroup"));
    }

    #[test]
    fn cross_field_rules() {
        let errs = Config::from_map(&map(&[("pid", "1"), ("process", "x")])).unwrap_err();
        assert!(errs[0].contains("not both"), "{errs:?}");
        let errs = Config::from_map(&map(&[("warn-within", "1m"), ("critical-within", "5m")])).unwrap_err();
        assert!(errs[0].contains("--critical-within"), "{errs:?}");
        let errs = Config::from_map(&map(&[("interval", "10s"), ("window", "20s")])).unwrap_err();
        assert!(errs[0].contains("--window"), "{errs:?}");
    }

    #[test]
    fn good_values_parse() {
        let c = Config::from_map(&map(&[
            ("listen", "127.0.0.1:0"),
            ("interval", "500ms"),
            ("pid", "1234"),
            ("memory-limit", "3GiB"),
            ("limit-basis", "rss"),
            ("go-url", "http://127.0.0.1:6060/debug/vars"),
            ("cgroup", "/sys/fs/cgroup/memory/x"),
        ]))
        .unwrap();
        assert_eq!(c.interval, Duration::from_millis(500));
        assert_eq!(c.target, Target::Pid(1234));
        assert_eq!(c.memory_limit, Some(Limit::Bytes(3 << 30)));
        assert_eq!(c.limit_basis, LimitBasis::Rss);
        assert_eq!(c.cgroup, Some(PathBuf::from("/sys/fs/cgroup/memory/x")));
    }

    #[test]
    fn toml_file_keys() {
        let m = parse_config_toml("go_url = \"http://a:1/metrics\"\ninterval = \"2s\"\npid = 7\n").unwrap();
        assert_eq!(m.get("go-url").map(String::as_str), Some("http://a:1/metrics"));
        assert_eq!(m.get("pid").map(String::as_str), Some("7"));
        // A switch as TOML writes it.
        let m = parse_config_toml("all-containers = true\n").unwrap();
        assert_eq!(m.get("all-containers").map(String::as_str), Some("true"));
        let errs = parse_config_toml("colour = \"red\"\ninterval = [1]\n").unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(parse_config_toml("not toml at all [").is_err());
    }

    #[test]
    fn precedence_flags_over_env_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("headroom.toml");
        std::fs::write(&file, "interval = \"3s\"\nwindow = \"20m\"\n").unwrap();
        let inv = parse_args([
            "headroom",
            "run",
            "--config",
            file.to_str().unwrap(),
            "--interval",
            "2s",
        ])
        .unwrap();
        let Invocation::Run(c) = inv else { panic!("{inv:?}") };
        assert_eq!(c.interval, Duration::from_secs(2));
        assert_eq!(c.window, Duration::from_secs(1200));
    }

    #[test]
    fn cli_parses_subcommands() {
        let inv = parse_args(["headroom", "check", "--pid", "5", "--for", "10s", "--json"]).unwrap();
        let Invocation::Check {
            config,
            sample_for,
            json,
        } = inv
        else {
            panic!("{inv:?}")
        };
        assert_eq!(
            (config.target, sample_for, json),
            (Target::Pid(5), Duration::from_secs(10), true)
        );
        let inv = parse_args(["headroom", "--interval", "2s"]).unwrap();
        let Invocation::Run(c) = inv else { panic!("{inv:?}") };
        assert_eq!(c.interval, Duration::from_secs(2));
        match parse_args(["headroom", "check", "--josn"]) {
            Err(CliError::Clap(e)) => assert!(e.to_string().contains("--josn"), "{e}"),
            other => panic!("{other:?}"),
        }
        match parse_args(["headroom", "check", "--for", "soon", "--interval", "x"]) {
            Err(CliError::Invalid(errs)) => assert_eq!(errs.len(), 2, "{errs:?}"),
            other => panic!("{other:?}"),
        }
    }

    /// `headroom status ARGS` with `env` as the environment.
    fn status_with(args: &[&str], env: &[(&str, &str)]) -> Result<StatusArgs, Vec<String>> {
        let m = command()
            .try_get_matches_from(["headroom", "status"].iter().chain(args))
            .unwrap();
        let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        status_args(m.subcommand_matches("status").unwrap(), |k| env.get(k).cloned())
    }

    #[test]
    fn status_asks_the_local_daemon_where_the_environment_says_it_listens() {
        let url = |env: &[(&str, &str)]| status_with(&[], env).map(|a| (a.url, a.url_from));
        assert_eq!(url(&[]), Ok(("http://127.0.0.1:9184".into(), "the default".into())));
        assert_eq!(
            url(&[("HEADROOM_LISTEN", "0.0.0.0:9300")]),
            Ok(("http://127.0.0.1:9300".into(), "HEADROOM_LISTEN=0.0.0.0:9300".into()))
        );
        assert_eq!(url(&[("HEADROOM_LISTEN", "[::]:9300")]).unwrap().0, "http://[::1]:9300");
        assert_eq!(
            url(&[("HEADROOM_LISTEN", "10.1.2.3:9300")]).unwrap().0,
            "http://10.1.2.3:9300"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("h.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:9400\"\n").unwrap();
        let f = file.to_str().unwrap();
        assert_eq!(url(&[("HEADROOM_CONFIG", f)]).unwrap().0, "http://127.0.0.1:9400");
        // The environment wins over the file, as for the daemon.
        let both = [("HEADROOM_CONFIG", f), ("HEADROOM_LISTEN", "0.0.0.0:9500")];
        assert_eq!(url(&both).unwrap().0, "http://127.0.0.1:9500");
        // --url wins over both, without its trailing slash.
        let a = status_with(&["--url", "https://h.example:9184/", "--json"], &both).unwrap();
        assert_eq!(
            (a.url.as_str(), a.url_from.as_str(), a.json),
            ("https://h.example:9184", "--url", true)
        );
    }

    #[test]
    fn status_target_and_url_are_checked() {
        let a = status_with(&["--target", "_/0f1e/3b1f9d7c5a2e"], &[]).unwrap();
        assert_eq!(a.target, Some(crate::key::TargetKey::new("", "0f1e", "3b1f9d7c5a2e")));
        let errs = status_with(&["--target", "a/b", "--url", "localhost:9184"], &[]).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].contains("--url \"localhost:9184\"") && errs[1].contains("--target \"a/b\""),
            "{errs:?}"
        );
        let errs = status_with(&[], &[("HEADROOM_LISTEN", "9184")]).unwrap_err();
        assert!(errs[0].starts_with("HEADROOM_LISTEN \"9184\""), "{errs:?}");
    }

    #[test]
    fn log_level_given_or_not() {
        assert_eq!(Config::default().log_level, None);
        let c = Config::from_map(&map(&[("log-level", "DEBUG")])).unwrap();
        assert_eq!(c.log_level, Some(LogLevel::Debug));
        assert_eq!(c.daemon_config().log_level, Some(LogLevel::Debug));
        let errs = Config::from_map(&map(&[("log-level", "loud")])).unwrap_err();
        assert_eq!(
            errs,
            ["--log-level \"loud\": expected one of error, warn, info, debug, trace"]
        );
    }

    #[test]
    fn the_table_gives_env_names_and_defaults() {
        let f = FLAGS.iter().find(|f| f.name == "go-interval").unwrap();
        assert_eq!(f.env(), "HEADROOM_GO_INTERVAL");
        assert_eq!(KEYS.len(), FLAGS.len());
        assert!(KEYS.contains(&"smaps-interval"));
        let help = command().render_long_help().to_string();
        for f in FLAGS {
            assert!(help.contains(&format!("--{}", f.name)), "{help}");
        }
    }
}
