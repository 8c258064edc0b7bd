//! Redaction of response excerpts before they are stored: known secret values
//! (the destination's credentials, echoed back) and the values of JSON members
//! whose names say they hold secrets.

use serde_json::Value;

const SECRET_KEYS: [&str; 9] = [
    "password",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "authorization",
    "api_key",
    "client_secret",
];

/// The body's start as text (lossy UTF-8, at most `limit` bytes), with secrets
/// replaced by `[redacted]`.
pub fn excerpt(body: &[u8], limit: usize, secrets: &[String]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let cut = &body[..body.len().min(limit)];
    let mut text = match serde_json::from_slice::<Value>(cut) {
        Ok(mut v) => {
            redact_json(&mut v);
            v.to_string()
        }
        Err(_) => String::from_utf8_lossy(cut).into_owned(),
    };
    for s in secrets {
        if text.contains(s.as_str()) {
            text = text.replace(s.as_str(), "[redacted]");
        }
    }
    Some(text)
}

/// The shortest piece of a token that counts as a piece of it.
const FRAGMENT: usize = 8;

/// `text` with every run of at least eight characters that begins or ends
/// `token` replaced by `[redacted]`: receivers echo parts of a rejected token
/// (seed 001: "Invalid access token: eyJhbGciOiJSUzIi.......3gZthv7Y"), and
/// a piece of a token is still a secret. Tokens shorter than twice the piece
/// are left to the whole-value redaction.
pub fn fragments(text: &str, token: &str) -> String {
    let (t, x) = (token.as_bytes(), text.as_bytes());
    if t.len() < 2 * FRAGMENT || !token.is_ascii() {
        return text.to_owned();
    }
    let mut hide = vec![false; x.len()];
    let (head, tail) = (&t[..FRAGMENT], &t[t.len() - FRAGMENT..]);
    for i in 0..x.len().saturating_sub(FRAGMENT - 1) {
        if &x[i..i + FRAGMENT] == head {
            let run = x[i..].iter().zip(t).take_while(|(a, b)| a == b).count();
            hide[i..i + run].iter_mut().for_each(|h| *h = true);
        }
        if &x[i..i + FRAGMENT] == tail {
            let end = i + FRAGMENT;
            let run = x[..end]
                .iter()
                .rev()
                .zip(t.iter().rev())
                .take_while(|(a, b)| a == b)
                .count();
            hide[end - run..end].iter_mut().for_each(|h| *h = true);
        }
    }
    if !hide.contains(&true) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < x.len() {
        if hide[i] {
            out.push_str("[redacted]");
            while i < x.len() && hide[i] {
                i += 1;
            }
        } else {
            // Runs of text not hidden: hidden runs start and end on ASCII
            // bytes, so these are whole characters.
            let start = i;
            while i < x.len() && !hide[i] {
                i += 1;
            }
            out.push_str(&text[start..i]);
        }
    }
    out
}

/// The values of members whose names say they hold secrets, replaced by
/// `[redacted]` (a person's view of a body).
pub fn redact_json(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let lower = k.to_ascii_lowercase();
                if SECRET_KEYS
                    .iter()
                    .any(|s| lower == *s || lower.ends_with(&format!("_{s}")))
                    && !v.is_null()
                {
                    *v = Value::String("[redacted]".into());
                } else {
                    redact_json(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_secrets_and_known_values_are_redacted() {
        let body = br#"{"access_token":"abc","user":{"password":"p","name":"n"},"echo":"Bearer s3cr3t-token"}"#;
        let out = excerpt(body, 1000, &["s3cr3t-token".into()]).unwrap();
        assert!(
            !out.contains("abc") && !out.contains("\"p\"") && !out.contains("s3cr3t"),
            "{out}"
        );
        assert!(out.contains("\"name\":\"n\""));
    }

    #[test]
    fn text_is_cut_at_the_limit() {
        assert_eq!(excerpt(b"hello world", 5, &[]).as_deref(), Some("hello"));
        assert_eq!(excerpt(b"", 5, &[]), None);
    }
}

/// Puts back what [`redact_json`] hid: every `[redacted]` string in `edited`
/// whose place exists in `stored` takes the stored value, so that a person
/// who edits a redacted view keeps the secrets they did not touch.
pub fn restore_redacted(edited: &mut Value, stored: &Value) {
    match (edited, stored) {
        (Value::Object(e), Value::Object(s)) => {
            for (k, v) in e.iter_mut() {
                if let Some(old) = s.get(k) {
                    restore_redacted(v, old);
                }
            }
        }
        (Value::Array(e), Value::Array(s)) => {
            for (v, old) in e.iter_mut().zip(s) {
                restore_redacted(v, old);
            }
        }
        (v @ Value::String(_), old) if v.as_str() == Some("[redacted]") => *v = old.clone(),
        _ => {}
    }
}

#[cfg(test)]
mod restore_tests {
    use super::*;

    #[test]
    fn pieces_of_a_token_are_redacted_too() {
        let token = "eyJhbGciOiJSUzIiLCJ0eXAiOiJKV1QifQ.payload.3gZthv7Y";
        // Seed 001's body: the token's start and end around dots.
        let echoed = format!(
            r#"{{"error":"invalid_token","error_description":"Invalid access token: {}.......{}"}}"#,
            &token[..16],
            &token[token.len() - 8..]
        );
        let out = fragments(&echoed, token);
        // (The dot before the token's last eight is the token's too.)
        assert_eq!(
            out,
            r#"{"error":"invalid_token","error_description":"Invalid access token: [redacted]......[redacted]"}"#
        );
        assert_eq!(
            fragments("naïve eyJhbGci… text", token),
            "naïve [redacted]… text"
        );
        assert_eq!(
            fragments("eyJhbGc is seven", token),
            "eyJhbGc is seven",
            "fewer than 8: kept"
        );
        assert_eq!(fragments("short tokens", "abc"), "short tokens");
    }

    #[test]
    fn an_edited_view_keeps_the_secrets_it_left_redacted() {
        let stored: Value =
            serde_json::from_str(r#"{"email":"a@x","password":"hunter2","tags":[{"token":"t1"}]}"#)
                .unwrap();
        let mut view = stored.clone();
        redact_json(&mut view);
        assert!(!view.to_string().contains("hunter2"));
        view["email"] = "b@x".into();
        restore_redacted(&mut view, &stored);
        assert_eq!(
            view,
            serde_json::json!({"email":"b@x","password":"hunter2","tags":[{"token":"t1"}]})
        );
    }
}
