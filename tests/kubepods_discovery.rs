//! Discovery over cgroup trees in every layout the kubelet makes:
//! `tests/fixtures/kubepods/NAME.dirs` lists the directories of a tree
//! (made under a temp dir), `NAME.want` the containers and pods discovery
//! must find in it, one `pod-uid container-id qos runtime cgroup-path`
//! line each (`-` for no runtime prefix) and one `pods UID…` line.

use headroom::source::kubepods::{discover, Discovery};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubepods")
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Makes the tree of `NAME.dirs` under a temp dir.
fn tree(name: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    for d in lines(&fixtures().join(format!("{name}.dirs"))) {
        std::fs::create_dir_all(root.path().join(d)).expect("mkdir");
    }
    root
}

fn described(d: &Discovery) -> Vec<String> {
    let mut out: Vec<String> = d
        .containers
        .iter()
        .map(|c| {
            let runtime = if c.path.runtime.is_empty() {
                "-"
            } else {
                &c.path.runtime
            };
            format!(
                "{} {} {} {runtime} {}",
                c.path.pod_uid,
                c.path.container_id,
                c.path.qos.as_str(),
                c.rel
            )
        })
        .collect();
    out.sort();
    out.push(format!("pods {}", d.pods.join(" ")).trim_end().to_owned());
    out
}

#[test]
fn every_layout_is_discovered() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .expect("fixtures")
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .into_string()
                .ok()?
                .strip_suffix(".dirs")
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 5, "fixtures missing: {names:?}");
    for name in names {
        let root = tree(&name);
        let d = discover(root.path());
        assert!(d.errors.is_empty(), "{name}: {:?}", d.errors);
        let mut want = lines(&fixtures().join(format!("{name}.want")));
        let pods = want.pop().expect("a pods line");
        want.sort();
        want.push(pods);
        assert_eq!(described(&d), want, "{name}");
        for c in &d.containers {
            assert!(c.dir.is_dir(), "{name}: {}", c.dir.display());
            assert!(c.dir.starts_with(root.path()), "{name}: {}", c.dir.display());
        }
    }
}

#[test]
fn an_oversized_directory_is_cut_said_and_the_rest_still_walked() {
    use headroom::source::kubepods::MAX_ENTRIES_PER_DIR;
    let root = tree("cgroupfs-v1");
    let besteffort = root.path().join("memory/kubepods/besteffort");
    for i in 0..=MAX_ENTRIES_PER_DIR {
        std::fs::create_dir(besteffort.join(format!("pod{i:08x}-0000-4000-8000-000000000000"))).expect("mkdir");
    }
    let d = discover(root.path());
    assert_eq!(d.errors.len(), 1, "{:?}", d.errors);
    assert!(
        d.errors[0].contains("kubepods/besteffort has more than 20000 subdirectories"),
        "{:?}",
        d.errors
    );
    // The Guaranteed and Burstable pods are all still found.
    let outside: Vec<_> = d.containers.iter().filter(|c| !c.rel.contains("besteffort")).collect();
    assert_eq!(outside.len(), 3, "{:?}", d.containers);
    // 20,000 of the BestEffort pods, and the two others.
    assert_eq!(d.pods.len(), MAX_ENTRIES_PER_DIR + 2);
}

#[test]
fn a_file_where_a_directory_was_is_ignored() {
    let root = tree("cgroupfs-v1");
    // Stray files at every level (cgroup files are files): not containers.
    std::fs::write(
        root.path().join("memory/kubepods/burstable/memory.limit_in_bytes"),
        "1\n",
    )
    .unwrap();
    std::fs::write(
        root.path()
            .join("memory/kubepods/pod11111111-1111-4111-8111-111111111111/cccccccccccccccccccccccccccc"),
        "x",
    )
    .unwrap();
    assert_eq!(discover(root.path()).containers.len(), 4);
}

#[test]
fn a_tree_that_changes_during_the_walk_never_fails_it() {
    // A pod removed and another made while walks run: every walk ends, none
    // reports an error for a directory that went away.
    let root = tree("cgroupfs-v1");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        let base = root.path().join("memory/kubepods/burstable");
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let d = base.join(format!("pod{:08x}-0000-4000-8000-000000000000/{:064x}", i % 50, i));
                let _ = std::fs::create_dir_all(&d);
                let _ = std::fs::remove_dir(&d);
                let _ = std::fs::remove_dir(d.parent().unwrap());
                i += 1;
            }
        })
    };
    for _ in 0..200 {
        let d = discover(root.path());
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert!(d.containers.len() >= 4);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().unwrap();
}
