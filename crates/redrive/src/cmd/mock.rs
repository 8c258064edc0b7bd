//! `redrive mock`: serve a scenario until stopped.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use redrive_mock::{MockServer, Scenario, EXAMPLE};

/// `redrive mock` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The scenario file (TOML). Without it every request gets 200.
    #[arg(long, value_name = "FILE", conflicts_with = "example")]
    scenario: Option<PathBuf>,
    /// The address to listen on; port 0 picks a free one.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7979")]
    listen: SocketAddr,
    /// Print a commented scenario that shows every step, and exit.
    #[arg(long)]
    example: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.example {
        print!("{EXAMPLE}");
        return Ok(ExitCode::SUCCESS);
    }
    let (scenario, base_dir) = match &args.scenario {
        Some(path) => (Scenario::load(path)?, path.parent().map(PathBuf::from)),
        None => (Scenario::ok(), None),
    };
    super::signal::init_logs(false);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mock = MockServer::start(scenario, args.listen, base_dir)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        // The first line of stdout is the address, for scripts and tests.
        println!("redrive mock listening on {}", mock.url());
        let _ = std::io::stdout().flush();
        super::signal::shutdown().await;
        mock.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
