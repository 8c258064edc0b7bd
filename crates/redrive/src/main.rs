//! The `redrive` command: a thin layer that parses arguments and calls the
//! library crates. Logic a library user could want does not live here.
//!
//! Exit codes (DESIGN.md): 0 success, 1 a delivery that ended parked (`send`),
//! 2 bad usage or bad input, with one line naming what was wrong.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod api_client;
mod cmd;
mod input;

/// mimalloc rather than the system allocator: a delivery allocates and frees
/// small buffers on one thread and frees what another allocated (the store's
/// threads hand messages to the runtime's); glibc's malloc spent about a tenth
/// of the engine's CPU there. Measured in BENCHMARKS.md (drain +15%).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Durable, policy-driven delivery of outbound API requests.
#[derive(Parser)]
#[command(name = "redrive", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify one attempt's outcome and show the policy's decision.
    Classify(cmd::classify::Args),
    /// List and explain retry policies.
    #[command(subcommand)]
    Policy(cmd::policy::Command),
    /// Serve a scripted HTTP endpoint that plays failures (fault injection).
    Mock(cmd::mock::Args),
    /// Run the delivery engine and its HTTP API.
    Serve(cmd::serve::Args),
    /// Deliver one request inline with a policy, printing each attempt.
    Send(cmd::send::Args),
    /// List and inspect messages on a running server.
    #[command(subcommand)]
    Messages(cmd::messages::MessagesCommand),
    /// Parked messages (the dead-letter store): list, show, redrive, discard.
    #[command(subcommand)]
    Dlq(cmd::messages::DlqCommand),
    /// Failures by destination and error class over a window.
    Report(cmd::messages::ReportArgs),
    /// Pause and resume destinations.
    #[command(subcommand)]
    Destinations(cmd::people::DestinationsCommand),
    /// Who changed what: every action a person took, newest first.
    Audit(cmd::people::AuditArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        Command::Classify(args) => cmd::classify::run(args),
        Command::Policy(command) => cmd::policy::run(command),
        Command::Mock(args) => cmd::mock::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Send(args) => cmd::send::run(args),
        Command::Messages(c) => cmd::messages::run_messages(c),
        Command::Dlq(c) => cmd::messages::run_dlq(c),
        Command::Report(a) => cmd::messages::run_report(a),
        Command::Destinations(c) => cmd::people::run_destinations(c),
        Command::Audit(a) => cmd::people::run_audit(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("redrive: error: {}", one_line(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

/// Prints clap's help and version as they are; any other parse error as one
/// line, exit code 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            // clap's message can span lines ("required arguments were not
            // provided:" then the list); keep it, drop the usage block after it.
            let rendered = e.render().to_string();
            let message: Vec<&str> = rendered
                .lines()
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let message = message.join(" ");
            let message = message.trim_start_matches("error: ");
            eprintln!("redrive: error: {message} (see `redrive --help`)");
            ExitCode::from(2)
        }
    }
}

fn one_line(s: &str) -> String {
    s.trim().replace('\n', "; ")
}
