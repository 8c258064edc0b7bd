//! `redrive serve`: load the configuration, open the store, run.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use redrive_server::Config;
use redrive_store::SqliteStore;

/// `redrive serve` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The configuration file (default: ./redrive.toml if present).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen here instead of server.listen.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Use this database instead of server.database (sqlite://FILE).
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Log lines as JSON or as text for people.
    #[arg(long, value_name = "FORMAT", default_value = "pretty", value_parser = ["json", "pretty"])]
    log_format: String,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let mut config = Config::load(args.config.as_deref(), &env)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(db) = args.database {
        config.database = db;
    }
    if config.database.starts_with("postgres") {
        bail!(
            "database `{}`: PostgreSQL is not supported yet; use sqlite://FILE",
            config.database
        );
    }
    super::signal::init_logs(args.log_format == "json");
    let store = SqliteStore::open_url(&config.database).map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        redrive_server::serve(config, store, super::signal::shutdown(), |addr| {
            // The first line of stdout is the address, for scripts and tests.
            println!("redrive listening on http://{addr}");
            let _ = std::io::stdout().flush();
        })
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}
