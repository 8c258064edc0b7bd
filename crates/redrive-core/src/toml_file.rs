//! Reading TOML files (policies, scenarios, configuration) with errors a person
//! can act on: one line naming the file, the position, the dotted key and the
//! problem. Parses text only; the caller reads the file.

use std::fmt;

use serde::de::DeserializeOwned;

/// A TOML file that could not be loaded. Displays as one line:
/// `billing.toml:4:12: policies.billing.schedule: the schedule is empty; ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TomlError {
    /// The file's name as the user gave it.
    pub file: String,
    /// Line and column (from 1), when the parser knows them.
    pub location: Option<(usize, usize)>,
    /// The dotted key at fault, when known.
    pub key: Option<String>,
    /// What is wrong, and how to fix it.
    pub message: String,
}

impl TomlError {
    /// An error about `key` found after parsing (no position known).
    pub fn at_key(file: &str, key: impl Into<String>, message: impl Into<String>) -> Self {
        TomlError {
            file: file.to_owned(),
            location: None,
            key: Some(key.into()),
            message: one_line(&message.into()),
        }
    }
}

impl fmt::Display for TomlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, col)) = self.location {
            write!(f, ":{line}:{col}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for TomlError {}

/// Parses `text` (the content of `file`) into `T`, tracking the key path so
/// the error names it.
pub fn parse_toml<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, TomlError> {
    let err = |location, key, message: &str| TomlError {
        file: file.to_owned(),
        location,
        key,
        message: one_line(message),
    };
    let de = toml::Deserializer::parse(text)
        .map_err(|e| err(e.span().map(|s| line_col(text, s.start)), None, e.message()))?;
    serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let key = (path != ".").then_some(path);
        err(
            inner.span().map(|s| line_col(text, s.start)),
            key,
            inner.message(),
        )
    })
}

fn one_line(s: &str) -> String {
    s.trim().replace('\n', "; ")
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
