//! `redrive policy list` and `redrive policy explain`.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;
use redrive_core::{explain, profiles};

use crate::input;

/// `redrive policy ...`
#[derive(Subcommand)]
pub enum Command {
    /// List the built-in profiles.
    List,
    /// Show a policy's schedule as a timeline and what each failure leads to.
    Explain {
        /// A built-in profile, or a policy of --policy-file.
        name: Option<String>,
        /// A TOML file of [policies.NAME] tables (all of them are explained
        /// unless NAME picks one).
        #[arg(long, value_name = "F")]
        policy_file: Option<String>,
    },
}

pub fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::List => {
            for p in profiles::all() {
                println!("{:<15} {}", p.name, p.description);
            }
            println!();
            println!("`redrive policy explain NAME` shows a profile's timeline and rules.");
        }
        Command::Explain { name, policy_file } => {
            let policies = match (&name, &policy_file) {
                (None, None) => bail!(
                    "name a profile ({}) or give --policy-file F",
                    profiles::NAMES.join(", ")
                ),
                (Some(name), None) => vec![input::builtin(name)?],
                (name, Some(file)) => {
                    let set = input::load_policy_file(file)?;
                    match name {
                        Some(name) => match set.get(name) {
                            Some(p) => vec![p.clone()],
                            None => bail!(
                                "{file}: no policy `{name}`; the file defines {}",
                                set.names().collect::<Vec<_>>().join(", ")
                            ),
                        },
                        None => set.policies().cloned().collect(),
                    }
                }
            };
            let text: Vec<String> = policies.iter().map(explain::explain).collect();
            print!("{}", text.join("\n"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
