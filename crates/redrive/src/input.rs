//! Reading what the user gave on the command line: files, `@FILE` arguments,
//! header lines and the policy to use. Every error names the flag and the value.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use redrive_core::{profiles, Policy, PolicySet};

/// Reads `DATA`, or the content of `FILE` for `@FILE`.
pub fn data_or_file(flag: &str, value: &str) -> Result<Vec<u8>> {
    match value.strip_prefix('@') {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("{flag} @{path}: cannot read {path}"))
        }
        None => Ok(value.as_bytes().to_vec()),
    }
}

/// Splits `Name: value` into its parts.
pub fn header(value: &str) -> Result<(String, String)> {
    let (name, v) = value
        .split_once(':')
        .ok_or_else(|| anyhow!("--header '{value}': expected 'Name: value'"))?;
    let name = name.trim();
    if name.is_empty()
        || name
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        bail!("--header '{value}': `{name}` is not a header name");
    }
    Ok((name.to_owned(), v.trim().to_owned()))
}

/// Which policy to use: a built-in profile or a policy from a file.
#[derive(Args, Debug)]
pub struct PolicyChoice {
    /// A built-in profile: standard, privo, privo-webhook, synchive, operations1, intentplatform.
    #[arg(long, value_name = "P", conflicts_with = "policy_file")]
    pub profile: Option<String>,
    /// A TOML file of [policies.NAME] tables.
    #[arg(long, value_name = "F")]
    pub policy_file: Option<String>,
    /// The policy of --policy-file to use (needed when the file has several).
    #[arg(long, value_name = "NAME", requires = "policy_file")]
    pub policy: Option<String>,
}

impl PolicyChoice {
    /// Resolves the choice to one policy.
    pub fn resolve(&self) -> Result<Policy> {
        if let Some(name) = &self.profile {
            return builtin(name);
        }
        let Some(file) = &self.policy_file else {
            bail!(
                "give a policy: --profile P (one of {}) or --policy-file F",
                profiles::NAMES.join(", ")
            );
        };
        let set = load_policy_file(file)?;
        match &self.policy {
            Some(name) => set.get(name).cloned().ok_or_else(|| {
                anyhow!(
                    "{file}: no policy `{name}`; the file defines {}",
                    set.names().collect::<Vec<_>>().join(", ")
                )
            }),
            None => {
                let mut policies = set.policies();
                match (policies.next(), policies.next()) {
                    (Some(only), None) => Ok(only.clone()),
                    _ => bail!(
                        "{file} defines several policies ({}); choose one with --policy NAME",
                        set.names().collect::<Vec<_>>().join(", ")
                    ),
                }
            }
        }
    }
}

/// The built-in profile `name`, or an error listing the profiles.
pub fn builtin(name: &str) -> Result<Policy> {
    profiles::builtin(name).ok_or_else(|| {
        anyhow!(
            "unknown profile `{name}`; the built-in profiles are {}",
            profiles::NAMES.join(", ")
        )
    })
}

/// Reads and validates a policy file.
pub fn load_policy_file(file: &str) -> Result<PolicySet> {
    let text = std::fs::read_to_string(Path::new(file))
        .with_context(|| format!("cannot read policy file {file}"))?;
    Ok(PolicySet::from_toml(file, &text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_split_at_the_first_colon() {
        assert_eq!(
            header("Retry-After: Sun, 06 Nov 1994 08:49:37 GMT").unwrap(),
            (
                "Retry-After".to_owned(),
                "Sun, 06 Nov 1994 08:49:37 GMT".to_owned()
            )
        );
        assert!(header("no colon").is_err());
        assert!(header(": value").is_err());
        assert!(header("Two Words: v").is_err());
    }
}
