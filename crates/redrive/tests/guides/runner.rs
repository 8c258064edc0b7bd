//! Runs a guide's `console` blocks in one shell and compares what each
//! command printed with what the guide says it prints.
//!
//! The format, kept close to what a person pastes and reads:
//!
//! - Only blocks fenced as `console` run; `sh`, `toml` and the others are
//!   for reading.
//! - A line starting with `$ ` is a command; a command line ending with `\`
//!   goes on with the next line. The lines after it, up to the next `$ ` or
//!   the fence, are its expected output (stdout and stderr together).
//! - In expected output, `[..]` matches any text within a line, a line
//!   `...` matches any number of lines, and a last line `[exit: N]` says
//!   the command exits with N (otherwise it must exit with 0).
//!
//! Every command runs in the same `bash`, so `export`, `cd` and background
//! jobs (`&`) carry over, in a scratch directory where `examples/` is the
//! repository's. The `redrive` built for the tests comes first on `PATH`.
//! The shell and what it started are killed when the guide ends.
//!
//! With `GUIDES_OVERWRITE=1` a guide whose commands printed something else
//! is rewritten with what they printed (as trycmd's `TRYCMD=overwrite`):
//! put the `[..]` and `...` back where the output varies.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// The longest a command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// The end of a command's output, with its exit code after it.
const MARK: &str = "<<<guide-runner exit ";

/// One command of a guide and what it should print.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The line of the guide the command starts on (from 1).
    pub line: usize,
    pub command: String,
    pub expected: Vec<String>,
    pub exit: i32,
    /// Where the expected output starts (an index into the guide's lines)
    /// and how many lines it takes, `[exit: N]` included.
    pub span: (usize, usize),
}

/// The commands of a guide's `console` blocks, in order.
pub fn parse(text: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    let mut in_other = false;
    let mut continuing = false;
    for (n, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        if fence {
            if in_console || in_other {
                in_console = false;
                in_other = false;
            } else if line.trim_start().trim_start_matches('`').trim() == "console" {
                in_console = true;
            } else {
                in_other = true;
            }
            continuing = false;
            continue;
        }
        if !in_console {
            continue;
        }
        if continuing {
            if let Some(step) = steps.last_mut() {
                step.command.push('\n');
                step.command.push_str(line);
                step.span.0 = n + 1;
            }
            continuing = line.ends_with('\\');
        } else if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                line: n + 1,
                command: command.to_owned(),
                expected: Vec::new(),
                exit: 0,
                span: (n + 1, 0),
            });
            continuing = line.ends_with('\\');
        } else if let Some(step) = steps.last_mut() {
            step.expected.push(line.to_owned());
            step.span.1 += 1;
        }
    }
    for step in &mut steps {
        if let Some(code) = step
            .expected
            .last()
            .and_then(|l| l.strip_prefix("[exit: "))
            .and_then(|l| l.strip_suffix(']'))
            .and_then(|c| c.parse().ok())
        {
            step.exit = code;
            step.expected.pop();
        }
    }
    steps
}

/// Whether `actual` is what `expected` describes (see the module's comment).
pub fn matches(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((e, rest)) if e == "..." => {
            (0..=actual.len()).any(|skip| matches(rest, &actual[skip..]))
        }
        Some((e, rest)) => match actual.split_first() {
            Some((a, more)) => line_matches(e, a) && matches(rest, more),
            None => false,
        },
    }
}

fn line_matches(expected: &str, actual: &str) -> bool {
    let parts: Vec<&str> = expected.split("[..]").collect();
    if parts.len() == 1 {
        return expected == actual;
    }
    let Some(rest) = actual.strip_prefix(parts[0]) else {
        return false;
    };
    let last = parts[parts.len() - 1];
    if rest.len() < last.len() || !rest.ends_with(last) {
        return false;
    }
    let mut middle = &rest[..rest.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match middle.find(part) {
            Some(at) => middle = &middle[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// A `bash` in its own process group, killed with everything it started.
pub struct Shell {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Shell {
    /// A shell in a scratch directory where `examples` is `repo`'s, with
    /// `bin` first on `PATH`.
    pub fn start(repo: &Path, bin: &Path) -> Shell {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("scratch dir");
        std::os::unix::fs::symlink(repo.join("examples"), dir.path().join("examples"))
            .expect("link examples");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .current_dir(dir.path())
            .env("PATH", path)
            .env_remove("REDRIVE_API_TOKEN")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("bash");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut shell = Shell {
            child,
            stdin,
            lines,
            _dir: dir,
        };
        shell.send("exec 2>&1");
        shell
    }

    fn send(&mut self, text: &str) {
        writeln!(self.stdin, "{text}").expect("write to bash");
    }

    /// Runs `command`; its output lines and exit code.
    pub fn run(&mut self, command: &str) -> Result<(Vec<String>, i32), String> {
        // The mark follows a newline of its own, in case the output ends
        // without one; the empty line this makes is dropped below.
        self.send(&format!(
            "{command}\n__rc=$?; printf '\\n{MARK}%d>>>\\n' \"$__rc\""
        ));
        let mut out = Vec::new();
        loop {
            match self.lines.recv_timeout(COMMAND_LIMIT) {
                Ok(line) => {
                    if let Some(code) = line.strip_prefix(MARK) {
                        let code = code.trim_end_matches(">>>").parse().unwrap_or(-1);
                        if out.last().is_some_and(|l: &String| l.is_empty()) {
                            out.pop();
                        }
                        return Ok((out, code));
                    }
                    out.push(line);
                }
                Err(_) => {
                    return Err(format!(
                        "no end within {COMMAND_LIMIT:?}; printed so far:\n{}",
                        out.join("\n")
                    ))
                }
            }
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs every step of `text` (named `name` in messages); the first that
/// printed something else or exited otherwise, described. With
/// `GUIDES_OVERWRITE` set, every step runs and the guide at `path` is
/// rewritten with what they printed.
pub fn run_guide(name: &str, text: &str) -> Result<usize, String> {
    run_guide_at(name, text, None)
}

/// [`run_guide`] for a guide read from `path`.
pub fn run_guide_at(name: &str, text: &str, path: Option<&Path>) -> Result<usize, String> {
    let steps = parse(text);
    if steps.is_empty() {
        return Err(format!("{name}: no `console` block with a `$ ` command"));
    }
    let overwrite = path.filter(|_| std::env::var_os("GUIDES_OVERWRITE").is_some());
    let bin = Path::new(env!("CARGO_BIN_EXE_redrive"))
        .parent()
        .expect("the binary's directory")
        .to_path_buf();
    let mut shell = Shell::start(&repo(), &bin);
    let mut printed: Vec<(Step, Vec<String>)> = Vec::new();
    for step in &steps {
        let (out, code) = shell
            .run(&step.command)
            .map_err(|e| format!("{name}:{}: `{}`: {e}", step.line, step.command))?;
        if code == step.exit && matches(&step.expected, &out) {
            continue;
        }
        if overwrite.is_some() {
            let mut out = out;
            if code != 0 {
                out.push(format!("[exit: {code}]"));
            }
            printed.push((step.clone(), out));
            continue;
        }
        return Err(format!(
            "{name}:{}: `{}`\n--- expected (exit {}):\n{}\n--- printed (exit {code}):\n{}",
            step.line,
            step.command,
            step.exit,
            step.expected.join("\n"),
            out.join("\n")
        ));
    }
    if let Some(path) = overwrite {
        if !printed.is_empty() {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            for (step, out) in printed.iter().rev() {
                lines.splice(step.span.0..step.span.0 + step.span.1, out.iter().cloned());
            }
            std::fs::write(path, lines.join("\n") + "\n").map_err(|e| e.to_string())?;
            return Err(format!(
                "{name}: rewrote {} steps' output (GUIDES_OVERWRITE)",
                printed.len()
            ));
        }
    }
    Ok(steps.len())
}
