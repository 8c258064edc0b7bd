//! The audit page: every change a person made, newest first, by whom.

use super::*;

#[derive(Deserialize, Default)]
pub(super) struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    before: Option<i64>,
}

/// The actions a person can filter by: the API's.
const ACTIONS: [&str; 7] = crate::api::AUDIT_ACTIONS;

pub(super) async fn audit_page<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
    Query(qy): Query<AuditQuery>,
) -> Response {
    let (session, cookie) = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let filter = redrive_store::AuditFilter {
        actor: non_empty(&qy.actor),
        action: non_empty(&qy.action),
        since: None,
    };
    let page_of = match state.engine.audit(filter, qy.before, PAGE_SIZE).await {
        Ok(p) => p,
        Err(e) => return store_error(e),
    };
    let actions: Vec<String> = ACTIONS.iter().map(|a| (*a).to_owned()).collect();
    let mut body = format!(
        "<h1>Audit</h1><p class=\"muted\">Every change a person made, newest first: who, what, on what.</p>\
         <form method=\"get\" action=\"/audit\" class=\"filters\"><label>actor <input name=\"actor\" value=\"{}\"></label>\
         <label>action {}</label><button>Filter</button></form>\
         <table id=\"audit\"><tr><th>at</th><th>actor</th><th>action</th><th>on</th><th>detail</th></tr>",
        esc(qy.actor.as_deref().unwrap_or("")),
        select("action", &actions, qy.action.as_deref())
    );
    for r in &page_of.records {
        let target = if r.target.starts_with("01") {
            format!("<a href=\"/messages/{0}\">{0}</a>", esc(&r.target))
        } else {
            esc(&r.target)
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{target}</td><td><code>{}</code></td></tr>",
            esc(&rfc3339(r.at)),
            esc(&r.actor),
            esc(&r.action),
            esc(&r.detail)
        ));
    }
    if page_of.records.is_empty() {
        body.push_str("<tr><td colspan=\"5\">No change yet.</td></tr>");
    }
    body.push_str("</table>");
    if let Some(next) = page_of.next {
        body.push_str(&format!(
            "<p><a href=\"/audit?actor={}&action={}&before={next}\">Older</a></p>",
            q(qy.actor.as_deref().unwrap_or("")),
            q(qy.action.as_deref().unwrap_or(""))
        ));
    }
    respond(page("Audit", "/audit", Some(&session), &body), cookie)
}
