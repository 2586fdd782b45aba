//! Misconfigurations of the container and the Go runtime that no amount of
//! watching fixes: each check fails only on evidence (a GOGC or GOMEMLIMIT
//! that could not be read is unknown, never a failure), and a failing check
//! states its fix.

use super::diagnosis::mib;
use crate::parse::cgroup_files::Limit;
use crate::parse::go_runtime::GO_NO_MEMORY_LIMIT;
use crate::sample::Sample;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// GOMEMLIMIT at or above the container's memory limit: the kernel
    /// kills before the Go runtime's soft limit can act.
    GomemlimitAboveLimit,
    /// No memory limit on the container's cgroup path.
    NoMemoryLimit,
    /// GOGC=off without a GOMEMLIMIT: the heap grows until the limit.
    GogcOffWithoutGomemlimit,
}

impl Check {
    pub const ALL: [Check; 3] = [
        Check::GomemlimitAboveLimit,
        Check::NoMemoryLimit,
        Check::GogcOffWithoutGomemlimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Check::GomemlimitAboveLimit => "gomemlimit_above_limit",
            Check::NoMemoryLimit => "no_memory_limit",
            Check::GogcOffWithoutGomemlimit => "gogc_off_without_gomemlimit",
        }
    }
}

/// A failing check, with the numbers that show it and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Misconfiguration {
    pub check: Check,
    pub evidence: String,
    pub fix: String,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Fails(Misconfiguration),
    Passes,
    /// What it needs could not be read.
    Unknown,
}

/// GOMEMLIMIT as far as it is known: the runtime's own export first (a
/// `debug.SetMemoryLimit` call shows there), else the target's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemLimit {
    Set(u64),
    Unset,
    Unknown,
}

fn gomemlimit(s: &Sample) -> MemLimit {
    let Some(g) = s.go.as_ref() else {
        return MemLimit::Unknown;
    };
    match g.sample.gomemlimit.or(g.gomemlimit_env) {
        None => MemLimit::Unknown,
        Some(m) if m >= GO_NO_MEMORY_LIMIT => MemLimit::Unset,
        Some(m) => MemLimit::Set(m),
    }
}

/// GOGC as far as it is known (runtime first, then environment); -1 is off.
fn gogc(s: &Sample) -> Option<i64> {
    let g = s.go.as_ref()?;
    g.sample.gogc_percent.or(g.gogc_env)
}

/// The GOMEMLIMIT to suggest for a container limit: 90 % of it.
fn suggested_gomemlimit(limit: u64) -> String {
    format!("GOMEMLIMIT={}MiB", (limit / 10 * 9) >> 20)
}

/// One check on one sample.
pub fn run(check: Check, s: &Sample) -> Outcome {
    let fails = |evidence: String, fix: String| Outcome::Fails(Misconfiguration { check, evidence, fix });
    match check {
        Check::NoMemoryLimit => match s.limit {
            None => Outcome::Unknown,
            Some(Limit::Bytes(_)) => Outcome::Passes,
            Some(Limit::Unlimited) => fails(
                format!(
                    "no memory limit on the cgroup's path{}",
                    s.target
                        .cgroup
                        .as_ref()
                        .map_or(String::new(), |p| format!(" ({})", p.display()))
                ),
                "Set a memory limit on the container (resources.limits.memory in Kubernetes), from the peak the \
                 service reaches, and GOMEMLIMIT to about 90 % of it: without a limit the service grows until the \
                 node runs out and the node-wide OOM killer picks a victim."
                    .into(),
            ),
        },
        Check::GomemlimitAboveLimit => match (gomemlimit(s), s.limit) {
            (MemLimit::Unset, _) | (_, Some(Limit::Unlimited)) => Outcome::Passes,
            (MemLimit::Unknown, _) | (_, None) => Outcome::Unknown,
            (MemLimit::Set(m), Some(Limit::Bytes(l))) if m >= l => fails(
                format!("GOMEMLIMIT {} ≥ the container's memory limit {}", mib(m), mib(l)),
                format!(
                    "GOMEMLIMIT can never act: the container is killed before the Go heap reaches it. Set it below \
                     the limit, to about 90 % of it less what lives outside the Go heap: {}.",
                    suggested_gomemlimit(l)
                ),
            ),
            (MemLimit::Set(_), Some(Limit::Bytes(_))) => Outcome::Passes,
        },
        Check::GogcOffWithoutGomemlimit => match (gogc(s), gomemlimit(s)) {
            (Some(g), _) if g >= 0 => Outcome::Passes,
            (None, _) => Outcome::Unknown,
            (Some(_), MemLimit::Set(_)) => Outcome::Passes,
            (Some(_), MemLimit::Unknown) => Outcome::Unknown,
            (Some(_), MemLimit::Unset) => fails(
                "GOGC=off and no GOMEMLIMIT: the GC never runs, the heap grows until the limit".into(),
                format!(
                    "Set GOMEMLIMIT with GOGC=off (the GC then runs only near it){}, or turn GOGC back on \
                     (GOGC=100, the default).",
                    s.limit_bytes()
                        .map_or(String::new(), |l| format!(": {}", suggested_gomemlimit(l)))
                ),
            ),
        },
    }
}

/// The checks that fail on this sample, in [`Check::ALL`] order.
pub fn misconfigurations(s: &Sample) -> Vec<Misconfiguration> {
    Check::ALL
        .into_iter()
        .filter_map(|c| match run(c, s) {
            Outcome::Fails(m) => Some(m),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::go_runtime::GoSample;
    use crate::sample::GoReading;

    const MIB: u64 = 1 << 20;
    const NONE: u64 = GO_NO_MEMORY_LIMIT;

    /// A sample with the effective `limit`; Go data when `go` is true, with
    /// GOGC and GOMEMLIMIT from the runtime's export and the environment.
    fn sample(
        limit: Option<Limit>,
        go: bool,
        exported: (Option<i64>, Option<u64>),
        env: (Option<i64>, Option<u64>),
    ) -> Sample {
        Sample {
            limit,
            go: go.then(|| GoReading {
                sample: GoSample {
                    gogc_percent: exported.0,
                    gomemlimit: exported.1,
                    ..GoSample::default()
                },
                gogc_env: env.0,
                gomemlimit_env: env.1,
                ..Default::default()
            }),
            ..Sample::default()
        }
    }

    fn outcome(c: Check, s: &Sample) -> &'static str {
        match run(c, s) {
            Outcome::Fails(_) => "fails",
            Outcome::Passes => "passes",
            Outcome::Unknown => "unknown",
        }
    }

    #[test]
    fn each_check_fails_passes_or_is_unknown() {
        let l128 = Some(Limit::Bytes(128 * MIB));
        let unl = Some(Limit::Unlimited);
        let table: &[(Check, Sample, &str)] = &[
            // no_memory_limit: from the effective limit.
            (
                Check::NoMemoryLimit,
                sample(unl, false, (None, None), (None, None)),
                "fails",
            ),
            (
                Check::NoMemoryLimit,
                sample(l128, false, (None, None), (None, None)),
                "passes",
            ),
            (
                Check::NoMemoryLimit,
                sample(None, false, (None, None), (None, None)),
                "unknown",
            ),
            // gomemlimit_above_limit: from the environment ...
            (
                Check::GomemlimitAboveLimit,
                sample(l128, true, (None, None), (Some(100), Some(1 << 30))),
                "fails",
            ),
            (
                Check::GomemlimitAboveLimit,
                sample(l128, true, (None, None), (Some(100), Some(128 * MIB))),
                "fails",
            ),
            (
                Check::GomemlimitAboveLimit,
                sample(l128, true, (None, None), (Some(100), Some(100 * MIB))),
                "passes",
            ),
            (
                Check::GomemlimitAboveLimit,
                sample(l128, true, (None, None), (Some(100), Some(NONE))),
                "passes",
            ),
            // ... the runtime's export comes first (debug.SetMemoryLimit) ...
            (
                Check::GomemlimitAboveLimit,
                sample(l128, true, (None, Some(100 * MIB)), (Some(100), Some(1 << 30))),
                "passes",
            ),
            (
                Check::GomemlimitAboveLimit,
                sample(l128, true, (None, Some(1 << 30)), (None, None)),
                "fails",
            ),
            // ... unreadable environment, no export, no Go data, no limit known.
            (
                Check::GomemlimitAboveLimit,
                sample(l128, true, (None, None), (None, None)),
                "unknown",
            ),
            (
                Check::GomemlimitAboveLimit,
                sample(l128, false, (None, None), (None, None)),
                "unknown",
            ),
            (
                Check::GomemlimitAboveLimit,
                sample(None, true, (None, None), (Some(100), Some(1 << 30))),
                "unknown",
            ),
            (
                Check::GomemlimitAboveLimit,
                sample(unl, true, (None, None), (Some(100), Some(1 << 30))),
                "passes",
            ),
            // gogc_off_without_gomemlimit.
            (
                Check::GogcOffWithoutGomemlimit,
                sample(l128, true, (None, None), (Some(-1), Some(NONE))),
                "fails",
            ),
            (
                Check::GogcOffWithoutGomemlimit,
                sample(l128, true, (Some(-1), Some(NONE)), (None, None)),
                "fails",
            ),
            (
                Check::GogcOffWithoutGomemlimit,
                sample(l128, true, (None, None), (Some(-1), Some(100 * MIB))),
                "passes",
            ),
            (
                Check::GogcOffWithoutGomemlimit,
                sample(l128, true, (None, None), (Some(100), Some(NONE))),
                "passes",
            ),
            (
                Check::GogcOffWithoutGomemlimit,
                sample(l128, true, (Some(100), None), (Some(-1), Some(NONE))),
                "passes",
            ),
            (
                Check::GogcOffWithoutGomemlimit,
                sample(l128, true, (None, None), (None, None)),
                "unknown",
            ),
            (
                Check::GogcOffWithoutGomemlimit,
                sample(l128, true, (Some(-1), None), (None, None)),
                "unknown",
            ),
            (
                Check::GogcOffWithoutGomemlimit,
                sample(l128, false, (None, None), (None, None)),
                "unknown",
            ),
        ];
        for (i, (check, s, want)) in table.iter().enumerate() {
            assert_eq!(outcome(*check, s), *want, "row {i}: {}", check.as_str());
        }
    }

    #[test]
    fn a_failing_check_states_its_evidence_and_fix() {
        let s = sample(
            Some(Limit::Bytes(128 * MIB)),
            true,
            (None, None),
            (Some(100), Some(1 << 30)),
        );
        let m = misconfigurations(&s);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].check, Check::GomemlimitAboveLimit);
        assert_eq!(
            m[0].evidence,
            "GOMEMLIMIT 1024 MiB ≥ the container's memory limit 128 MiB"
        );
        assert!(m[0].fix.contains("GOMEMLIMIT=115MiB"), "{}", m[0].fix);
        let s = sample(Some(Limit::Unlimited), true, (Some(-1), Some(NONE)), (None, None));
        let checks: Vec<_> = misconfigurations(&s).into_iter().map(|m| m.check).collect();
        assert_eq!(checks, [Check::NoMemoryLimit, Check::GogcOffWithoutGomemlimit]);
        assert!(misconfigurations(&Sample::default()).is_empty());
    }
}
