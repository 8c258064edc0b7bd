//! The destinations page: each destination's URL, policy, limits, circuit
//! and schedule.

use super::*;

/// Destinations per page.
const PAGE: usize = 25;

#[derive(Deserialize, Default)]
pub(super) struct DestinationsQuery {
    after: Option<String>,
}

/// A page of destinations by name (`?after=NAME` for the next).
pub(super) async fn destinations_page<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
    Query(qy): Query<DestinationsQuery>,
) -> Response {
    let (session, cookie) = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let after = qy.after.as_deref().filter(|a| !a.is_empty());
    let (dests, next) = state.engine.destinations_page(after, PAGE);
    let mut body = format!(
        "<h1>Destinations</h1><p class=\"muted\">{} configured{}</p>",
        state.engine.destination_count(),
        after
            .map(|a| format!(
                ", after <code>{}</code> (<a href=\"/destinations\">from the first</a>)",
                esc(a)
            ))
            .unwrap_or_default()
    );
    if dests.is_empty() && after.is_none() {
        body.push_str("<section class=\"card\"><p>No destination is configured: add a <code>[destinations.NAME]</code> table to redrive.toml.</p></section>");
    }
    let now = state.engine.now_ms();
    for (d, circuit) in dests {
        let circuit = circuit.as_str();
        let credentials = crate::credentials::view(d, now);
        let credentials_row = match credentials["state"].as_str() {
            Some("failing") => format!(
                "<tr><th>credentials</th><td class=\"credentials-failing\">failing: {} (messages wait; the token URL is tried again at {})</td></tr>",
                esc(credentials["detail"].as_str().unwrap_or("")),
                esc(credentials["retry_at"].as_str().unwrap_or(""))
            ),
            _ => match credentials["kind"].as_str() {
                Some("oauth2") => "<tr><th>credentials</th><td>ok (OAuth 2.0 client credentials, renewed before they expire)</td></tr>".to_owned(),
                Some("static") => "<tr><th>credentials</th><td>static</td></tr>".to_owned(),
                _ => String::new(),
            },
        };
        let may_act = session.caller.role.allows(crate::roles::Need::Operate);
        let csrf = esc(&session.csrf);
        let name = esc(&d.name);
        let pause_row = match state.engine.pause_of(&d.name) {
            Some(p) => format!(
                "<tr><th>paused</th><td class=\"paused\" id=\"paused-{name}\">paused by <b>{}</b> at {}{} (messages are kept, none is attempted){}</td></tr>",
                esc(&p.paused_by),
                esc(&rfc3339(p.paused_at)),
                p.note.as_deref().map(|n| format!(": {}", esc(n))).unwrap_or_default(),
                if may_act {
                    format!("<form method=\"post\" action=\"/destinations/{name}/resume\" class=\"actions\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button id=\"resume-{name}\">Resume</button></form>")
                } else {
                    String::new()
                }
            ),
            None if may_act => format!(
                "<tr><th>delivery</th><td><form method=\"post\" action=\"/destinations/{name}/pause\" class=\"actions\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <label>note <input name=\"note\" id=\"pause-note-{name}\"></label><button id=\"pause-{name}\">Pause</button></form></td></tr>"
            ),
            None => String::new(),
        };
        let reconcile_row = d
            .reconcile
            .as_ref()
            .map(|r| format!(
                "<tr><th>reconcile</th><td>before parking an indeterminate request: <code>{} {}</code></td></tr>",
                esc(&r.method),
                esc(&r.path.to_string())
            ))
            .unwrap_or_default();
        let steps: Vec<(u32, u64)> = redrive_core::explain::timeline(&d.policy)
            .iter()
            .map(|s| (s.attempt, s.at.as_millis() as u64))
            .collect();
        let when: String = steps
            .iter()
            .map(|(n, at)| format!("{n}: +{}", human_ms(*at)))
            .collect::<Vec<_>>()
            .join(" · ");
        body.push_str(&format!(
            "<section class=\"card\"><h2>{}</h2><table>\
             <tr><th>URL</th><td><code>{}</code></td></tr><tr><th>policy</th><td>{} — {}</td></tr>\
             <tr><th>limits</th><td>{} in flight{}{}</td></tr><tr><th>circuit</th><td class=\"circuit-{circuit}\">{circuit}</td></tr>{pause_row}{credentials_row}{reconcile_row}</table>\
             <h2>Schedule</h2>{}<p class=\"muted\">{}{}</p><details><summary>Rules</summary><pre>{}</pre></details></section>",
            esc(&d.name),
            esc(&d.url.to_string()),
            esc(&d.policy_name),
            esc(&d.policy.description),
            d.max_in_flight,
            d.rate_limit.map(|r| format!(", {} per second", r.per_second)).unwrap_or_default(),
            if d.signing.is_some() { ", signed (Standard Webhooks)" } else { "" },
            html::timeline_svg(&steps),
            esc(&when),
            if d.policy.schedule.is_jittered() { " (upper bounds: jittered)" } else { "" },
            esc(&redrive_core::explain::explain(&d.policy))
        ));
    }
    if let Some(next) = next {
        body.push_str(&format!(
            "<p><a href=\"/destinations?after={}\">Next page</a></p>",
            q(&next)
        ));
    }
    respond(
        page("Destinations", "/destinations", Some(&session), &body),
        cookie,
    )
}

/// `POST /destinations/{name}/pause`.
pub(super) async fn pause<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let session = match checked(&state, &headers, &f, true) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let note = first(&f, "note")
        .filter(|n| !n.trim().is_empty())
        .map(str::to_owned);
    match state.engine.pause(&name, note, &session.caller.name).await {
        Ok(_) => Redirect::to("/destinations").into_response(),
        Err(e) => store_error(e),
    }
}

/// `POST /destinations/{name}/resume`.
pub(super) async fn resume<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let session = match checked(&state, &headers, &f, true) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match state.engine.resume(&name, &session.caller.name).await {
        Ok(_) => Redirect::to("/destinations").into_response(),
        Err(e) => store_error(e),
    }
}
