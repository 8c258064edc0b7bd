//! What the environment adds to `redrive.toml`: `${VAR}` in every string,
//! and `REDRIVE__SECTION__KEY` overrides.

use std::collections::HashMap;

/// Expands `${VAR}` in every string; an unset variable is an error naming the key.
pub(super) fn expand(
    v: &mut toml::Value,
    path: &str,
    env: &HashMap<String, String>,
) -> Result<(), (String, String)> {
    match v {
        toml::Value::String(s) => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    return Err((
                        path.to_owned(),
                        "an unclosed `${` ; write ${NAME}".to_owned(),
                    ));
                };
                let var = &after[..end];
                match env.get(var) {
                    Some(value) => out.push_str(value),
                    None => {
                        return Err((
                            path.to_owned(),
                            format!("the environment variable `{var}` is not set"),
                        ))
                    }
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand(item, &format!("{path}[{i}]"), env)?;
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                expand(item, &p, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `REDRIVE__SERVER__LISTEN=0.0.0.0:7878` sets `server.listen`. The value is
/// read as TOML when it parses as a value (`["a","b"]`, `32`, `true`), else as
/// a string.
pub(super) fn apply_overrides(
    v: &mut toml::Value,
    env: &HashMap<String, String>,
) -> Result<(), (String, String)> {
    let mut keys: Vec<&String> = env.keys().filter(|k| k.starts_with("REDRIVE__")).collect();
    keys.sort();
    for var in keys {
        let path: Vec<String> = var["REDRIVE__".len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            return Err((
                var.clone(),
                "an override is REDRIVE__SECTION__KEY, for example REDRIVE__SERVER__LISTEN"
                    .to_owned(),
            ));
        }
        let raw = &env[var];
        let parsed = format!("x = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("x"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let mut cur = &mut *v;
        for (i, seg) in path.iter().enumerate() {
            let toml::Value::Table(t) = cur else {
                return Err((
                    path[..i].join("."),
                    format!("{var} sets a key inside a value that is not a table"),
                ));
            };
            if i + 1 == path.len() {
                t.insert(seg.clone(), parsed.clone());
                break;
            }
            cur = t
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        }
    }
    Ok(())
}
