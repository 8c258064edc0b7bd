//! `redrive serve`: load the configuration, open the store, run.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use redrive_server::Config;
use redrive_store::{PostgresOptions, PostgresStore, SqliteStore};

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
    super::signal::init_logs(args.log_format == "json");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let announce = |at: redrive_server::Listening| {
        // The first line of stdout is the address, for scripts and tests.
        println!("redrive listening on http://{}", at.api);
        if let Some(inbound) = at.inbound {
            println!("redrive inbound sources on http://{inbound}");
        }
        let _ = std::io::stdout().flush();
    };
    runtime.block_on(async move {
        if config.database.starts_with("postgres://")
            || config.database.starts_with("postgresql://")
        {
            let options = PostgresOptions {
                pool_size: config.pool_size,
                statement_timeout: config.statement_timeout,
            };
            let store = PostgresStore::connect(&config.database, &options)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            redrive_server::serve_with(config, store, super::signal::shutdown(), announce).await?;
        } else {
            let store =
                SqliteStore::open_url(&config.database).map_err(|e| anyhow::anyhow!("{e}"))?;
            store
                .take_delivery_lock()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            store.set_min_free_disk(config.min_free_disk);
            redrive_server::serve_with(config, store, super::signal::shutdown(), announce).await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
