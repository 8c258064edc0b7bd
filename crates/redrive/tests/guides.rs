//! The guides in `docs/guides/` are run as a person would paste them: each
//! `console` block's commands in one shell, against `redrive mock`
//! scenarios from `examples/`, and what each prints is compared with what
//! the guide shows (see `guides/runner.rs` for the format). A guide that
//! goes stale fails here.

#[path = "guides/runner.rs"]
mod runner;

/// Every guide, each run by a test of its own below.
const GUIDES: &[&str] = &[
    "privo-outbound.md",
    "privo-webhooks.md",
    "synchive.md",
    "operations1.md",
    "intentplatform.md",
    "postgres-nodes.md",
    "operating.md",
];

fn guide(name: &str) {
    let path = runner::repo().join("docs/guides").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match runner::run_guide_at(name, &text, Some(&path)) {
        Ok(steps) => println!("{name}: {steps} commands as the guide says"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn privo_outbound() {
    guide("privo-outbound.md");
}

#[test]
fn privo_webhooks() {
    guide("privo-webhooks.md");
}

#[test]
fn synchive() {
    guide("synchive.md");
}

#[test]
fn operations1() {
    guide("operations1.md");
}

#[test]
fn intentplatform() {
    guide("intentplatform.md");
}

#[test]
fn postgres_nodes() {
    guide("postgres-nodes.md");
}

#[test]
fn operating() {
    guide("operating.md");
}

#[test]
fn every_guide_is_run_and_linked_from_the_readme() {
    let dir = runner::repo().join("docs/guides");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .expect("docs/guides")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md") && n != "README.md")
        .collect();
    found.sort();
    let mut listed: Vec<String> = GUIDES.iter().map(|g| g.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed, "docs/guides/ and GUIDES differ");
    let this = std::fs::read_to_string(runner::repo().join("crates/redrive/tests/guides.rs"))
        .expect("this file");
    let readme = std::fs::read_to_string(runner::repo().join("README.md")).expect("README");
    for g in GUIDES {
        assert!(
            this.contains(&format!("guide(\"{g}\")")),
            "{g} has no test of its own in guides.rs"
        );
        assert!(
            readme.contains(&format!("docs/guides/{g}")),
            "README.md does not link docs/guides/{g}"
        );
    }
}

#[test]
fn a_guide_whose_output_changed_fails_and_says_where() {
    let guide = "# t\n\n```console\n$ echo one\none\n$ printf 'a\\nb\\n'; echo c\na\n...\n$ echo \"x=$((40 + 2))\"\nx=41\n```\n";
    let e = runner::run_guide("t.md", guide).expect_err("41 is not 42");
    assert!(e.starts_with("t.md:9: `echo \"x=$((40 + 2))\"`"), "{e}");
    assert!(e.contains("--- printed (exit 0):\nx=42"), "{e}");
}

#[test]
fn exit_codes_wildcards_and_state_carry_over() {
    let guide = "```console\n$ export X=7; cd examples\n$ echo \"$X $(basename \"$PWD\")\"\n7 examples\n$ echo 'id 01J42 ok'; false\nid [..] ok\n[exit: 1]\n$ (sleep 30; echo late) &\n```\n\n```sh\n$ not run\n```\n";
    assert_eq!(runner::run_guide("u.md", guide), Ok(4));
    let wrong_exit = "```console\n$ true\n[exit: 3]\n```\n";
    let e = runner::run_guide("v.md", wrong_exit).expect_err("exit 0, not 3");
    assert!(e.contains("(exit 3)") && e.contains("(exit 0)"), "{e}");
}

#[test]
fn the_parser_reads_continuations_and_only_console_blocks() {
    let steps = runner::parse(
        "```sh\n$ skipped\n```\n```console\n$ curl -s \\\n  -d x\nout\n...\n$ b\n```\n",
    );
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].command, "curl -s \\\n  -d x");
    assert_eq!(steps[0].expected, vec!["out", "..."]);
    assert_eq!(steps[0].line, 5);
    assert!(runner::matches(
        &["a[..]c".into(), "...".into(), "z".into()],
        &["abbc".into(), "q".into(), "r".into(), "z".into()]
    ));
    assert!(!runner::matches(&["a[..]c".into()], &["abd".into()]));
    assert!(!runner::matches(&["a".into()], &["a".into(), "b".into()]));
}
