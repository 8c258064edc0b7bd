//! The documents stay maps, not notebooks: ARCHITECTURE.md and
//! BENCHMARKS.md keep to about 300 lines, and every module and file
//! ARCHITECTURE.md names exists, so the map cannot point at code that
//! moved.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(repo().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn architecture_and_benchmarks_stay_short() {
    for name in ["ARCHITECTURE.md", "BENCHMARKS.md"] {
        let lines = read(name).lines().count();
        assert!(
            lines <= 300,
            "{name} has {lines} lines; keep it a map/report of at most 300 (history lives in git)"
        );
    }
}

/// The backquoted names at the head of a code map's bullet (before its
/// first `:`), e.g. "- `disk`: ..." or "- `duration`, `size`: ...".
fn bullet_heads(line: &str) -> Vec<String> {
    let Some(rest) = line.trim_start().strip_prefix("- ") else {
        return Vec::new();
    };
    let head = rest.split(": ").next().unwrap_or("");
    if !head.starts_with('`') {
        return Vec::new();
    }
    head.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Whether `name` (`disk`, `policy::file`, `api/people`, `cmd::*`,
/// `sqlite/writer.rs`) is a module or file of the crate at `krate`.
fn module_exists(krate: &Path, name: &str) -> bool {
    let rel = name.trim_end_matches("::*").replace("::", "/");
    let src = krate.join("src");
    let rel = rel.trim_end_matches(".rs");
    [
        src.join(format!("{rel}.rs")),
        src.join(rel).join("mod.rs"),
        src.join(rel),
        krate.join(rel),
        krate.join(format!("{rel}.rs")),
    ]
    .iter()
    .any(|p| p.exists())
        || (rel == "lib" && src.join("lib.rs").exists())
        || (rel == "main" && src.join("main.rs").exists())
}

#[test]
fn every_module_architecture_names_exists() {
    let text = read("ARCHITECTURE.md");
    let root = repo();
    let mut krate: Option<PathBuf> = None;
    let mut checked = 0;
    let mut missing = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(h) = line.strip_prefix("### `") {
            // "### `crates/redrive-store`: durability" or "### `bench/`, `fuzz/`"
            let dir = h.split('`').next().unwrap_or("").trim_end_matches('/');
            let path = root.join(dir);
            assert!(
                path.is_dir(),
                "ARCHITECTURE.md:{}: `{dir}` is not a directory",
                n + 1
            );
            krate = Some(path);
            continue;
        }
        if line.starts_with("## ") {
            krate = None;
        }
        let Some(k) = &krate else { continue };
        for name in bullet_heads(line) {
            checked += 1;
            if !module_exists(k, &name) {
                missing.push(format!(
                    "ARCHITECTURE.md:{}: `{name}` in {}",
                    n + 1,
                    k.display()
                ));
            }
        }
    }
    // Paths named anywhere: `redrive/tests/crash.rs`, `sqlite/mod.rs`.
    let files: Vec<String> = walk(&root.join("crates"))
        .into_iter()
        .chain(walk(&root.join("bench")))
        .filter_map(|p| p.to_str().map(str::to_owned))
        .collect();
    for (n, line) in text.lines().enumerate() {
        for name in line.split('`').skip(1).step_by(2) {
            if name.ends_with(".rs") && !name.contains(' ') {
                checked += 1;
                if !files.iter().any(|f| f.ends_with(&format!("/{name}"))) {
                    missing.push(format!("ARCHITECTURE.md:{}: `{name}`", n + 1));
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} names found: has the format changed?"
    );
    assert!(
        missing.is_empty(),
        "named but not found:\n{}",
        missing.join("\n")
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_module_that_moved_is_caught() {
    let krate = repo().join("crates/redrive-store");
    assert!(module_exists(&krate, "sqlite"));
    assert!(module_exists(&krate, "sqlite/writer.rs"));
    assert!(!module_exists(&krate, "sqlite/nowhere"));
    assert_eq!(
        bullet_heads("- `duration`, `size`: the parsers"),
        vec!["duration", "size"]
    );
    assert!(bullet_heads("- Must not decide policy: it reports").is_empty());
}
