//! Configuration: flags > `HEADROOM_*` env > `--config` TOML file > defaults.
//!
//! clap collects flags and env as raw strings; the file adds what they left
//! out; [`Config::from_map`] validates the merged map and reports every bad
//! key at once. Tests fill that map directly.

use crate::parse::cgroup_files::Limit;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Exit status for a bad configuration (EX_USAGE from sysexits.h).
pub const EXIT_CONFIG: i32 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "headroom",
    version,
    about = "Predicts a Go service's OOM kill and says why its memory grows.",
    long_about = "headroom watches one Go process and the memory cgroup the kernel charges it to, \
exports Prometheus metrics, JSON status and a dashboard, and tells how close the container is to its \
memory limit.\n\nEvery flag can also be set as env HEADROOM_<FLAG> (e.g. HEADROOM_GO_URL) or as a \
key in the TOML file given with --config (e.g. go-url = \"http://127.0.0.1:6060/debug/vars\"). \
Flags win over env, env over the file.\n\nExamples:\n  headroom run --process my-go-app --go-url http://127.0.0.1:6060/debug/vars\n  headroom check --pid 1234 --for 30s"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of `run`, also accepted with no subcommand.
    #[command(flatten)]
    pub run: TargetArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default): poll, serve /metrics, /api/v1/status and /.
    Run(TargetArgs),
    /// One-shot report to stdout. Exit 0: no risk; 1: warning; 2: critical; 3: could not read the target; 64: bad flags.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Sample for this long before reporting, to show growth. Example: --for 30s
    #[arg(long = "for", value_name = "DUR")]
    pub for_: Option<String>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Flags shared by `run` and `check`. All raw strings here: validation is
/// done once, on the merged map, in [`Config::from_map`].
#[derive(Debug, Args, Default, Clone)]
pub struct TargetArgs {
    /// TOML file with any of these flags as keys (go-url = "..."). Env: HEADROOM_CONFIG
    #[arg(long, value_name = "FILE", env = "HEADROOM_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP address for /metrics, /api/v1/status and the dashboard. Default 0.0.0.0:9184. Example: --listen 127.0.0.1:9184
    #[arg(long, value_name = "ADDR", env = "HEADROOM_LISTEN")]
    pub listen: Option<String>,
    /// Poll period of the cgroup and /proc. Default 1s. Example: --interval 500ms
    #[arg(long, value_name = "DUR", env = "HEADROOM_INTERVAL")]
    pub interval: Option<String>,
    /// History used for slopes and predictions. Default 10m. Example: --window 30m
    #[arg(long, value_name = "DUR", env = "HEADROOM_WINDOW")]
    pub window: Option<String>,
    /// PID of the target (shared PID namespace). Example: --pid 1234
    #[arg(long, value_name = "PID", env = "HEADROOM_PID")]
    pub pid: Option<String>,
    /// Name of the target (its comm or executable name); found again if it restarts. Example: --process my-go-app
    #[arg(long, value_name = "NAME", env = "HEADROOM_PROCESS")]
    pub process: Option<String>,
    /// The memory cgroup to read: `auto` (the target's, else our own) or a directory (absolute, or relative to --cgroup-root). Default auto. Example: --cgroup /sys/fs/cgroup/memory/kubepods/pod1/ctr
    #[arg(long, value_name = "auto|PATH", env = "HEADROOM_CGROUP")]
    pub cgroup: Option<String>,
    /// Where cgroupfs is mounted. Default /sys/fs/cgroup.
    #[arg(long, value_name = "PATH", env = "HEADROOM_CGROUP_ROOT")]
    pub cgroup_root: Option<String>,
    /// Where procfs is mounted. Default /proc.
    #[arg(long, value_name = "PATH", env = "HEADROOM_PROC_ROOT")]
    pub proc_root: Option<String>,
    /// The target's expvar JSON (/debug/vars) or Prometheus text (/metrics), told apart by content. Example: --go-url http://127.0.0.1:6060/debug/vars
    #[arg(long, value_name = "URL", env = "HEADROOM_GO_URL")]
    pub go_url: Option<String>,
    /// Go scrape period; an expvar scrape stops the target's world, so keep it rarer than --interval. Default 5s.
    #[arg(long, value_name = "DUR", env = "HEADROOM_GO_INTERVAL")]
    pub go_interval: Option<String>,
    /// Period for /proc/PID/smaps_rollup (LazyFree); it walks the target's whole memory map (~10 ms at 500 MiB). Default 30s.
    #[arg(long, value_name = "DUR", env = "HEADROOM_SMAPS_INTERVAL")]
    pub smaps_interval: Option<String>,
    /// Override the limit, for platforms that kill below the cgroup limit. Example: --memory-limit 3GiB
    #[arg(long, value_name = "BYTES", env = "HEADROOM_MEMORY_LIMIT")]
    pub memory_limit: Option<String>,
    /// What the killer measures: unreclaimable (kernel OOM), working_set (kubelet), usage (cgroup usage), rss (the target's RSS, as platform killers do). Default unreclaimable.
    #[arg(long, value_name = "BASIS", env = "HEADROOM_LIMIT_BASIS")]
    pub limit_basis: Option<String>,
    /// Log format: text or json. The level comes from RUST_LOG (default info). Default text.
    #[arg(long, value_name = "FORMAT", env = "HEADROOM_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Warn when OOM is predicted within this. Default 30m.
    #[arg(long, value_name = "DUR", env = "HEADROOM_WARN_WITHIN")]
    pub warn_within: Option<String>,
    /// Critical when OOM is predicted within this. Default 5m.
    #[arg(long, value_name = "DUR", env = "HEADROOM_CRITICAL_WITHIN")]
    pub critical_within: Option<String>,
    /// Push alerts to Alertmanager's v2 API. Example: --alertmanager-url http://alertmanager:9093
    #[arg(long, value_name = "URL", env = "HEADROOM_ALERTMANAGER_URL")]
    pub alertmanager_url: Option<String>,
    /// POST a JSON alert on every risk change. Example: --webhook-url http://hooks.local/headroom
    #[arg(long, value_name = "URL", env = "HEADROOM_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Save the target's /debug/pprof/heap here when risk rises. Example: --profile-dir /var/lib/headroom
    #[arg(long, value_name = "DIR", env = "HEADROOM_PROFILE_DIR")]
    pub profile_dir: Option<String>,
    /// Where the target serves /debug/pprof/heap. Default: --go-url's host.
    #[arg(long, value_name = "URL", env = "HEADROOM_PPROF_URL")]
    pub pprof_url: Option<String>,
}

/// Every key the map (and the TOML file) may hold, in flag spelling.
pub const KEYS: &[&str] = &[
    "listen",
    "interval",
    "window",
    "pid",
    "process",
    "cgroup",
    "cgroup-root",
    "proc-root",
    "go-url",
    "go-interval",
    "smaps-interval",
    "memory-limit",
    "limit-basis",
    "log-format",
    "warn-within",
    "critical-within",
    "alertmanager-url",
    "webhook-url",
    "profile-dir",
    "pprof-url",
];

impl TargetArgs {
    /// The values given as flags or env, keyed by flag name.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let pairs = [
            ("listen", &self.listen),
            ("interval", &self.interval),
            ("window", &self.window),
            ("pid", &self.pid),
            ("process", &self.process),
            ("cgroup", &self.cgroup),
            ("cgroup-root", &self.cgroup_root),
            ("proc-root", &self.proc_root),
            ("go-url", &self.go_url),
            ("go-interval", &self.go_interval),
            ("smaps-interval", &self.smaps_interval),
            ("memory-limit", &self.memory_limit),
            ("limit-basis", &self.limit_basis),
            ("log-format", &self.log_format),
            ("warn-within", &self.warn_within),
            ("critical-within", &self.critical_within),
            ("alertmanager-url", &self.alertmanager_url),
            ("webhook-url", &self.webhook_url),
            ("profile-dir", &self.profile_dir),
            ("pprof-url", &self.pprof_url),
        ];
        pairs
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_owned(), v.clone())))
            .collect()
    }

    /// Flags/env over the file's values; `Err` lists every problem.
    pub fn merged_map(&self) -> Result<BTreeMap<String, String>, Vec<String>> {
        let mut map = match &self.config {
            Some(path) => read_config_file(path)?,
            None => BTreeMap::new(),
        };
        map.extend(self.to_map());
        Ok(map)
    }
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
        if !KEYS.contains(&flag.as_str()) {
            errors.push(format!("unknown key {key:?}; known keys: {}", KEYS.join(", ")));
            continue;
        }
        let v = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            other => {
                errors.push(format!(
                    "key {key:?}: expected a string or an integer, found {}",
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

/// What the killer measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitBasis {
    Unreclaimable,
    WorkingSet,
    Usage,
    Rss,
}

impl LimitBasis {
    pub const NAMES: &'static str = "unreclaimable, working_set, usage, rss";

    pub fn parse(s: &str) -> Option<LimitBasis> {
        Some(match s {
            "unreclaimable" => LimitBasis::Unreclaimable,
            "working_set" | "working-set" => LimitBasis::WorkingSet,
            "usage" => LimitBasis::Usage,
            "rss" => LimitBasis::Rss,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LimitBasis::Unreclaimable => "unreclaimable",
            LimitBasis::WorkingSet => "working_set",
            LimitBasis::Usage => "usage",
            LimitBasis::Rss => "rss",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
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
    pub warn_within: Duration,
    pub critical_within: Duration,
    pub alertmanager_url: Option<String>,
    pub webhook_url: Option<String>,
    pub profile_dir: Option<PathBuf>,
    pub pprof_url: Option<String>,
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

    fn duration(&mut self, key: &str, default: &str, min: Duration) -> Duration {
        let v = self.raw(key).unwrap_or(default).to_owned();
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

    fn dir(&mut self, key: &str, default: &str) -> PathBuf {
        let v = self.raw(key).unwrap_or(default).to_owned();
        let p = PathBuf::from(&v);
        if !p.is_dir() {
            self.fail(key, &v, "no such directory");
        }
        p
    }
}

impl Config {
    /// Validates a raw map of flag name → value; `Err` holds every problem,
    /// each naming the flag, the value and what is allowed.
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Config, Vec<String>> {
        let mut v = Validator {
            map,
            errors: Vec::new(),
        };
        for key in map.keys() {
            if !KEYS.contains(&key.as_str()) {
                v.errors.push(format!("unknown setting {key:?}"));
            }
        }
        let listen_raw = v.raw("listen").unwrap_or("0.0.0.0:9184").to_owned();
        let listen = listen_raw.parse().unwrap_or_else(|_| {
            v.fail(
                "listen",
                &listen_raw,
                "expected HOST:PORT such as 0.0.0.0:9184 or 127.0.0.1:0",
            );
            SocketAddr::from(([0, 0, 0, 0], 9184))
        });
        let ms = Duration::from_millis;
        let interval = v.duration("interval", "1s", ms(50));
        let window = v.duration("window", "10m", ms(1000));
        if !interval.is_zero() && !window.is_zero() && window < interval * 3 {
            let w = v.raw("window").unwrap_or("10m").to_owned();
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
        let cgroup = match v.raw("cgroup") {
            None | Some("auto") => None,
            Some("") => {
                v.fail("cgroup", "", "expected auto or a cgroup directory");
                None
            }
            Some(p) => Some(PathBuf::from(p)),
        };
        let cgroup_root = v.dir("cgroup-root", "/sys/fs/cgroup");
        let proc_root = v.dir("proc-root", "/proc");
        let go_url = v.url("go-url");
        let go_interval = v.duration("go-interval", "5s", ms(100));
        let smaps_interval = v.duration("smaps-interval", "30s", ms(1000));
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
        let basis_raw = v.raw("limit-basis").unwrap_or("unreclaimable").to_owned();
        let limit_basis = LimitBasis::parse(&basis_raw).unwrap_or_else(|| {
            v.fail(
                "limit-basis",
                &basis_raw,
                &format!("expected one of {}", LimitBasis::NAMES),
            );
            LimitBasis::Unreclaimable
        });
        let lf = v.raw("log-format").unwrap_or("text").to_owned();
        let log_format = match lf.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                v.fail("log-format", &lf, "expected text or json");
                LogFormat::Text
            }
        };
        let warn_within = v.duration("warn-within", "30m", ms(1000));
        let critical_within = v.duration("critical-within", "5m", ms(1000));
        if !warn_within.is_zero() && critical_within > warn_within {
            let c = v.raw("critical-within").unwrap_or("5m").to_owned();
            v.fail("critical-within", &c, "must not be longer than --warn-within");
        }
        let alertmanager_url = v.url("alertmanager-url");
        let webhook_url = v.url("webhook-url");
        let pprof_url = v.url("pprof-url");
        let profile_dir = v.raw("profile-dir").map(PathBuf::from);
        if v.errors.is_empty() {
            Ok(Config {
                listen,
                interval,
                window,
                target,
                cgroup,
                cgroup_root,
                proc_root,
                go_url,
                go_interval,
                smaps_interval,
                memory_limit,
                limit_basis,
                log_format,
                warn_within,
                critical_within,
                alertmanager_url,
                webhook_url,
                profile_dir,
                pprof_url,
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
        let errs = parse_config_toml("colour = \"red\"\ninterval = [1]\n").unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(parse_config_toml("not toml at all [").is_err());
    }

    #[test]
    fn precedence_flags_over_env_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("headroom.toml");
        std::fs::write(&file, "interval = \"3s\"\nwindow = \"20m\"\n").unwrap();
        let args = TargetArgs {
            config: Some(file),
            interval: Some("2s".into()),
            ..Default::default()
        };
        let c = Config::from_map(&args.merged_map().unwrap()).unwrap();
        assert_eq!(c.interval, Duration::from_secs(2));
        assert_eq!(c.window, Duration::from_secs(1200));
    }

    #[test]
    fn cli_parses_env_and_subcommands() {
        use clap::Parser;
        let cli = Cli::try_parse_from(["headroom", "check", "--pid", "5", "--for", "10s", "--json"]).unwrap();
        match cli.command {
            Some(Command::Check(c)) => {
                assert_eq!(c.target.pid.as_deref(), Some("5"));
                assert_eq!(c.for_.as_deref(), Some("10s"));
                assert!(c.json);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["headroom", "--interval", "2s"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.interval.as_deref(), Some("2s"));
    }
}
