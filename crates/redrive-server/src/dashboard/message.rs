//! A message's page: why it is where it is, every attempt in words, its
//! request, and what a person may do to it.

use super::*;

pub(super) async fn message_page<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (session, cookie) = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    render(&state, &session, cookie, id, None).await
}

/// The page of message `id`; with a draft, its edit form as the person
/// typed it and the error next to the field it concerns.
async fn render<S: Store>(
    state: &AppState<S>,
    session: &Session,
    cookie: Option<String>,
    id: String,
    draft: Option<(Draft, Field, String)>,
) -> Response {
    let (m, attempts) = match state.engine.store().get(id.clone()).await {
        Ok(Some(x)) => x,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                Html(page(
                    "Not found",
                    "",
                    Some(session),
                    &format!("<div class=\"error\">No message {}</div>", esc(&id)),
                )),
            )
                .into_response()
        }
        Err(e) => return store_error(e),
    };
    let view = crate::views::MessageView::new(&m, None);
    let headers_html: String = view
        .headers
        .iter()
        .map(|(k, v)| format!("{}: {}\n", esc(k), esc(v)))
        .collect();
    let secrets = state
        .engine
        .destination(&m.destination)
        .map(|d| d.secrets())
        .unwrap_or_default();
    let body_preview = redrive_engine::redact::excerpt(&m.body, 4096, &secrets)
        .unwrap_or_else(|| "(empty)".to_owned());
    let mut body = format!(
        "<h1>Message <code>{}</code> <span class=\"badge state-{}\">{}</span></h1>",
        esc(&m.id),
        m.state.as_str(),
        m.state.as_str()
    );
    if let Some(r) = &m.park_reason {
        body.push_str(&format!("<div class=\"error\">Parked: <b>{}</b> after {} attempt(s); last error class <b>{}</b>.</div>", esc(r), m.attempts, esc(m.last_class.as_deref().unwrap_or(""))));
    }
    if let Some(r) = &m.resolution {
        body.push_str(&format!(
            "<div class=\"notice\" id=\"resolution\">Resolved <b>{}</b> by <b>{}</b> at {}{}</div>",
            esc(r.outcome.as_str()),
            esc(&r.actor),
            esc(&rfc3339(r.at)),
            r.note
                .as_deref()
                .map(|n| format!(": {}", esc(n)))
                .unwrap_or_default()
        ));
    }
    let may_act = session.caller.role.allows(crate::roles::Need::Operate);
    if m.state == MessageState::Parked && may_act {
        let csrf = esc(&session.csrf);
        body.push_str(&format!(
            "<form method=\"post\" action=\"/messages/{id}/act\" class=\"actions\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button name=\"action\" value=\"redrive\" id=\"redrive\">Redrive</button>\
             <button name=\"action\" value=\"discard\" class=\"danger\" id=\"discard\">Discard</button></form>\
             <form method=\"post\" action=\"/messages/{id}/resolve\" class=\"actions\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label>note <input name=\"note\" id=\"resolve-note\"></label>\
             <button name=\"outcome\" value=\"applied\" id=\"resolve-applied\">It took effect: mark delivered</button>\
             <button name=\"outcome\" value=\"not_applied\" id=\"resolve-not-applied\">It did not: send again</button></form>",
            id = esc(&m.id)
        ));
        let (d, error) = match draft {
            Some((d, field, msg)) => (d, Some((field, msg))),
            None => (Draft::of(&m), None),
        };
        body.push_str(&edit_form(&m.id, &session.csrf, &d, error.as_ref()));
    } else if m.state == MessageState::Parked {
        body.push_str(&format!(
            "<p class=\"muted\" id=\"no-actions\">Signed in as <b>{}</b> ({}): redrive, discard, edit and resolve need the operator role.</p>",
            esc(&session.caller.name),
            session.caller.role
        ));
    }
    body.push_str("<section class=\"card\"><h2>Attempts</h2><ol class=\"attempts\">");
    for a in attempts.iter().rev() {
        let outcome = match (a.status, &a.transport) {
            (Some(s), _) => format!("HTTP {s}"),
            (None, Some(t)) => t.clone(),
            _ => "—".to_owned(),
        };
        let decision = match (a.reason.as_str(), a.delay_ms) {
            ("credentials_renewed", _) => {
                "token rejected: renewed and sent again at once (no attempt spent)".to_owned()
            }
            ("reconciled_applied", _) => {
                "delivered: the reconciliation probe found it took effect".to_owned()
            }
            ("reconciled_not_applied", Some(d)) => format!(
                "retry in {}: the reconciliation probe found it did not take effect",
                human_ms(d)
            ),
            (_, Some(d)) => format!("retry in {}", human_ms(d)),
            (_, None) => format!("{} ({})", a.decision, a.reason),
        };
        body.push_str(&format!(
            "<li class=\"cls-{}\"><b>#{}</b> cycle {} · {} · <b>{}</b> · class <b>{}</b> · {} ms · {}",
            esc(&a.class),
            a.n,
            a.cycle,
            esc(&rfc3339(a.started_at)),
            esc(&outcome),
            esc(&a.class),
            a.latency_ms,
            esc(&decision)
        ));
        if let Some(d) = &a.detail {
            body.push_str(&format!("<div class=\"muted\">{}</div>", esc(d)));
        }
        if let Some(x) = &a.response_excerpt {
            body.push_str(&format!("<pre>{}</pre>", esc(x)));
        }
        body.push_str("</li>");
    }
    if attempts.is_empty() {
        body.push_str("<li>No attempt yet.</li>");
    }
    body.push_str("</ol></section>");
    body.push_str(&format!(
        "<section class=\"card\"><h2>Request</h2><table>\
         <tr><th>destination</th><td>{}</td></tr>{}<tr><th>request</th><td><code>{} {}</code></td></tr>\
         <tr><th>idempotency key</th><td><code>{}</code></td></tr><tr><th>cycle</th><td>{} ({} attempt(s) in it, {} in all)</td></tr>\
         <tr><th>created</th><td>{}</td></tr><tr><th>next attempt</th><td>{}</td></tr></table>\
         <h2>Headers</h2><pre>{}</pre><h2>Body</h2><pre>{}</pre></section>",
        esc(&m.destination),
        m.source
            .as_deref()
            .map(|s| format!(
                "<tr><th>received on</th><td>source <a href=\"/parked?source={}\">{}</a></td></tr>",
                q(s),
                esc(s)
            ))
            .unwrap_or_default(),
        esc(&m.method),
        esc(&m.path),
        esc(&m.idempotency_key),
        m.cycle,
        m.attempts,
        m.total_attempts,
        esc(&rfc3339(m.created_at)),
        esc(&m.next_attempt_at.map(rfc3339).unwrap_or_else(|| "—".to_owned())),
        if headers_html.is_empty() { "(none)".to_owned() } else { headers_html },
        esc(&body_preview)
    ));
    match state.engine.revisions(m.id.clone()).await {
        Ok(revisions) if revisions.len() > 1 => body.push_str(&revisions_html(&revisions)),
        Ok(_) => {}
        Err(e) => return store_error(e),
    }
    respond(
        page(
            &format!("Message {}", m.id),
            "/parked",
            Some(session),
            &body,
        ),
        cookie,
    )
}

pub(super) async fn act_on_message<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let s = match checked(&state, &headers, &f, true) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let actor = &s.caller.name;
    let result = match first(&f, "action") {
        Some("discard") => state.engine.discard(vec![id.clone()], actor).await,
        _ => state.engine.redrive(vec![id.clone()], actor).await,
    };
    if let Err(e) = result {
        return store_error(e);
    }
    Redirect::to(&format!("/messages/{}", q(&id))).into_response()
}

/// Which field of the edit form an error concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Field {
    Method,
    Path,
    Headers,
    Body,
}

impl Field {
    const fn id(self) -> &'static str {
        match self {
            Field::Method => "method",
            Field::Path => "path",
            Field::Headers => "headers",
            Field::Body => "body",
        }
    }
}

/// The edit form as a person typed it.
pub(super) struct Draft {
    method: String,
    path: String,
    /// `Name: value`, one per line.
    headers: String,
    body: String,
    note: String,
}

impl Draft {
    /// The message's request, as the form shows it: a JSON body pretty
    /// printed, secret header values as `[redacted]` (kept when sent back
    /// unchanged).
    fn of(m: &redrive_store::Message) -> Draft {
        // Secret members shown redacted, as everywhere (put back on save).
        let body = match serde_json::from_slice::<serde_json::Value>(&m.body) {
            Ok(mut v) => {
                redrive_engine::redact::redact_json(&mut v);
                serde_json::to_string_pretty(&v).unwrap_or_default()
            }
            Err(_) => String::from_utf8_lossy(&m.body).into_owned(),
        };
        Draft {
            method: m.method.clone(),
            path: m.path.clone(),
            headers: crate::views::redacted_headers(&m.headers)
                .iter()
                .map(|(k, v)| format!("{k}: {v}\n"))
                .collect(),
            body,
            note: String::new(),
        }
    }

    fn from_form(f: &BTreeMap<String, Vec<String>>) -> Draft {
        let field = |k: &str| first(f, k).unwrap_or("").to_owned();
        Draft {
            method: field("method"),
            path: field("path"),
            headers: field("headers"),
            body: field("body"),
            note: field("note"),
        }
    }
}

fn edit_form(id: &str, csrf: &str, d: &Draft, error: Option<&(Field, String)>) -> String {
    let error_for = |field: Field| match error {
        Some((f, msg)) if *f == field => format!(
            "<p class=\"field-error\" id=\"error-{}\">{}</p>",
            field.id(),
            esc(msg)
        ),
        _ => String::new(),
    };
    format!(
        "<section class=\"card\"><h2>Edit the request</h2>\
         <p class=\"muted\">Correct what the receiver refused (seed 000: \"correct the original request, and try again\"). Saving makes a new revision; the earlier ones are kept.</p>\
         <form method=\"post\" action=\"/messages/{id}/edit\" class=\"edit\" id=\"edit\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"edit-method\">method</label><input id=\"edit-method\" name=\"method\" value=\"{method}\">{e_method}\
         <label for=\"edit-path\">path</label><input id=\"edit-path\" name=\"path\" value=\"{path}\">{e_path}\
         <label for=\"edit-headers\">headers (one <code>Name: value</code> per line)</label><textarea id=\"edit-headers\" name=\"headers\" rows=\"4\">{headers}</textarea>{e_headers}\
         <label for=\"edit-body\">body</label><textarea id=\"edit-body\" name=\"body\" rows=\"10\">{body}</textarea>{e_body}\
         <label for=\"edit-note\">note (why, for the audit)</label><input id=\"edit-note\" name=\"note\" value=\"{note}\">\
         <button type=\"submit\" id=\"edit-save\">Save as a new revision</button></form></section>",
        id = esc(id),
        csrf = esc(csrf),
        method = esc(&d.method),
        path = esc(&d.path),
        headers = esc(&d.headers),
        body = esc(&d.body),
        note = esc(&d.note),
        e_method = error_for(Field::Method),
        e_path = error_for(Field::Path),
        e_headers = error_for(Field::Headers),
        e_body = error_for(Field::Body),
    )
}

/// Every revision, and what changed from each to the next (a line diff of
/// the request as text).
fn revisions_html(revisions: &[redrive_store::Revision]) -> String {
    let text = |r: &redrive_store::Revision| {
        let mut t = format!("{} {}\n", r.method, r.path);
        for (k, v) in crate::views::redacted_headers(&r.headers) {
            t.push_str(&format!("{k}: {v}\n"));
        }
        t.push('\n');
        match serde_json::from_slice::<serde_json::Value>(&r.body) {
            Ok(mut v) => {
                redrive_engine::redact::redact_json(&mut v);
                t.push_str(&serde_json::to_string_pretty(&v).unwrap_or_default())
            }
            Err(_) => t.push_str(&String::from_utf8_lossy(&r.body)),
        }
        t.push('\n');
        t
    };
    let mut out = String::from(
        "<section class=\"card\" id=\"revisions\"><h2>Revisions</h2><ol class=\"revisions\">",
    );
    for pair in revisions.windows(2) {
        let (old, new) = (&pair[0], &pair[1]);
        let (a, b) = (text(old), text(new));
        let diff = similar::TextDiff::from_lines(&a, &b);
        let mut lines = String::new();
        for change in diff.iter_all_changes() {
            let (class, sign) = match change.tag() {
                similar::ChangeTag::Delete => ("del", "-"),
                similar::ChangeTag::Insert => ("ins", "+"),
                similar::ChangeTag::Equal => ("same", " "),
            };
            lines.push_str(&format!(
                "<span class=\"{class}\">{sign} {}</span>",
                esc(change.value())
            ));
        }
        out.push_str(&format!(
            "<li><b>revision {}</b> by <b>{}</b> at {}{}<pre class=\"diff\">{lines}</pre></li>",
            new.n,
            esc(new.actor.as_deref().unwrap_or("?")),
            esc(&rfc3339(new.created_at)),
            new.note
                .as_deref()
                .map(|n| format!(": {}", esc(n)))
                .unwrap_or_default(),
        ));
    }
    out.push_str("</ol></section>");
    out
}

/// `Name: value` lines into headers; a line that is not one names itself.
fn parse_headers(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(format!("line {} is not `Name: value`", i + 1));
        };
        out.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(out)
}

/// `POST /messages/{id}/edit`: the form checked as an enqueue is; an error
/// shows the form again, as typed, with the error next to its field.
pub(super) async fn edit_message<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let session = match checked(&state, &headers, &f, true) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let draft = Draft::from_form(&f);
    let current = match state.engine.store().get(id.clone()).await {
        Ok(Some((m, _))) => m,
        Ok(None) => return render(&state, &session, None, id, None).await,
        Err(e) => return store_error(e),
    };
    let refuse = |draft: Draft, field: Field, msg: String| {
        let state = Arc::clone(&state);
        let session = session.clone();
        let id = id.clone();
        async move {
            let mut res = render(&state, &session, None, id, Some((draft, field, msg))).await;
            *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            res
        }
    };
    let mut given = match parse_headers(&draft.headers) {
        Ok(h) => h,
        Err(msg) => return refuse(draft, Field::Headers, msg).await,
    };
    // A secret shown as `[redacted]` and left so keeps its stored value.
    for (k, v) in given.iter_mut() {
        if v == "[redacted]" {
            if let Some((_, stored)) = current
                .headers
                .iter()
                .find(|(ck, _)| ck.eq_ignore_ascii_case(k))
            {
                v.clone_from(stored);
            }
        }
    }
    let json_body = given
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.contains("json"));
    let body_bytes = if json_body && !draft.body.trim().is_empty() {
        match serde_json::from_str::<serde_json::Value>(&draft.body) {
            Ok(mut v) => {
                if let Ok(stored) = serde_json::from_slice::<serde_json::Value>(&current.body) {
                    redrive_engine::redact::restore_redacted(&mut v, &stored);
                }
                serde_json::to_vec(&v).unwrap_or_default()
            }
            Err(e) => {
                let msg = format!("the body is not JSON (its Content-Type says it is): {e}");
                return refuse(draft, Field::Body, msg).await;
            }
        }
    } else {
        draft.body.clone().into_bytes()
    };
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&body_bytes)
    };
    let parts = match crate::api::validate::request_parts(
        Some(draft.method.clone()),
        draft.path.clone(),
        &given,
        None,
        Some(&b64),
    ) {
        Ok(p) => p,
        Err(problem) => {
            let msg = problem.detail().to_owned();
            let field = if msg.contains("method") {
                Field::Method
            } else if msg.contains("path") {
                Field::Path
            } else if msg.contains("header") {
                Field::Headers
            } else {
                Field::Body
            };
            return refuse(draft, field, msg).await;
        }
    };
    let edit = redrive_store::Edit {
        method: parts.method,
        path: parts.path,
        headers: parts.headers,
        body: parts.body,
        note: Some(draft.note.clone()).filter(|n| !n.trim().is_empty()),
    };
    match state
        .engine
        .edit(id.clone(), edit, &session.caller.name)
        .await
    {
        Ok(_) => Redirect::to(&format!("/messages/{}", q(&id))).into_response(),
        Err(e) => store_error(e),
    }
}

/// `POST /messages/{id}/resolve`.
pub(super) async fn resolve_message<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let session = match checked(&state, &headers, &f, true) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let outcome = match first(&f, "outcome") {
        Some("applied") => redrive_store::Outcome::Applied,
        _ => redrive_store::Outcome::NotApplied,
    };
    let note = first(&f, "note")
        .filter(|n| !n.trim().is_empty())
        .map(str::to_owned);
    match state
        .engine
        .resolve(id.clone(), outcome, note, &session.caller.name)
        .await
    {
        Ok(_) => Redirect::to(&format!("/messages/{}", q(&id))).into_response(),
        Err(e) => store_error(e),
    }
}
