//! `cargo xtask deps`: each layer's dependency count against its budget.
//!
//! A layer's count is the number of distinct crates in
//! `cargo tree -p NAME -e normal --no-default-features --prefix none`, minus the
//! crate itself: what someone who adds that one crate with default features off
//! compiles. The budgets live in [`BUDGETS`] only; the README's crate map shows
//! the counts this task prints. CI runs it, so a layer that grows past its
//! budget fails the build.

use std::collections::BTreeSet;
use std::process::Command;

/// Each layer and the most crates outside itself it may pull in, with
/// default features off. Lower a budget when a layer gets lighter; raise one
/// only with a reason in the commit.
pub(crate) const BUDGETS: &[(&str, usize)] = &[
    ("swarm-queue", 3),
    ("swarm-core", 15),
    ("swarm-steal", 30),
    ("swarm-store", 30),
    ("swarm-agents", 30),
    // `SwarmMetrics` and `EventMonitor` alone; the exporter is feature `prometheus`.
    ("swarm-metrics", 25),
    ("swarm", 48),
    // The facade with its Prometheus exporter (67) plus the HTTP stack:
    // axum, hyper, hyper-util, tower, tower-http and theirs (26).
    ("swarm-dashboard", 100),
];

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if let Some(other) = args.first() {
        return Err(format!("unknown option {other:?} for `deps`"));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut over = Vec::new();
    eprintln!("{:<16} {:>5} {:>7}", "crate", "deps", "budget");
    for &(name, budget) in BUDGETS {
        let output = Command::new(&cargo)
            .args(["tree", "-p", name, "-e", "normal", "--no-default-features"])
            .args(["--prefix", "none"])
            .output()
            .map_err(|e| format!("cannot run cargo tree for {name}: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "cargo tree -p {name} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let deps = dependencies(name, &String::from_utf8_lossy(&output.stdout));
        let mark = if deps.len() > budget { "  over" } else { "" };
        eprintln!("{name:<16} {:>5} {budget:>7}{mark}", deps.len());
        if deps.len() > budget {
            over.push(format!(
                "{name} pulls {} crates, over its budget of {budget}: {}",
                deps.len(),
                deps.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if over.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "dependency budget exceeded (see xtask/src/deps.rs):\n  {}\n\
             make the new dependency optional or lighter, or raise the budget with a reason",
            over.join("\n  ")
        ))
    }
}

/// The distinct crates of a `cargo tree --prefix none` listing, other than
/// `name` itself: one line per crate (`serde v1.0.200`, a repeat marked ` (*)`,
/// a proc-macro marked ` (proc-macro)`), named by crate and version.
pub(crate) fn dependencies(name: &str, tree: &str) -> BTreeSet<String> {
    tree.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let krate = words.next()?;
            let version = words.next().filter(|v| v.starts_with('v'))?;
            (krate != name).then(|| format!("{krate} {version}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TREE: &str = "\
swarm-core v0.1.0 (/work/crates/swarm-core)
futures-core v0.3.31
serde v1.0.219
serde_derive v1.0.219 (proc-macro)
proc-macro2 v1.0.95
swarm-queue v0.1.0 (/work/crates/swarm-queue)
serde v1.0.219 (*)
tokio v1.45.0
pin-project-lite v0.2.16

";

    #[test]
    fn counts_distinct_crates_without_the_crate_itself() {
        let deps = dependencies("swarm-core", TREE);
        assert_eq!(deps.len(), 7, "{deps:?}");
        assert!(deps.contains("serde v1.0.219"));
        assert!(deps.contains("serde_derive v1.0.219"));
        assert!(deps.contains("swarm-queue v0.1.0"));
        assert!(!deps.iter().any(|d| d.starts_with("swarm-core ")));
    }

    #[test]
    fn two_versions_of_a_crate_count_twice() {
        let deps = dependencies("x", "x v0.1.0\nhashbrown v0.15.0\nhashbrown v0.16.1\n");
        assert_eq!(deps.len(), 2);
    }

    #[test]
    fn an_empty_tree_has_no_dependencies() {
        assert!(dependencies("swarm-queue", "swarm-queue v0.1.0 (/q)\n").is_empty());
        assert!(dependencies("swarm-queue", "").is_empty());
    }

    #[test]
    fn every_budget_names_a_workspace_crate_once() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf();
        let mut seen = BTreeSet::new();
        for &(name, _) in BUDGETS {
            assert!(seen.insert(name), "{name} is listed twice");
            let dir = root.join("crates").join(name);
            assert!(dir.join("Cargo.toml").is_file(), "no crate {name}");
        }
    }

    /// The README's crate map states every budgeted crate's count.
    #[test]
    fn readme_gives_each_layer_its_dependency_count() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf();
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        for &(name, budget) in BUDGETS {
            let row = format!("| [`{name}`]");
            let line = readme
                .lines()
                .find(|l| l.starts_with(&row))
                .unwrap_or_else(|| panic!("README.md's crate map has no row for {name}"));
            assert!(
                line.contains(&format!("(budget {budget})")),
                "README.md's row for {name} lacks its count and `(budget {budget})`: {line}"
            );
        }
    }
}
