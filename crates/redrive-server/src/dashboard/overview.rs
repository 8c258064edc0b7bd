//! The overview page: counts by state, the attempts chart, and the
//! messages by destination.

use std::collections::HashMap;

use super::*;

/// Up to this many destinations configured, the overview lists every one
/// (zeros included); beyond, only those holding messages.
const FEW_DESTINATIONS: usize = 100;

pub(super) async fn overview<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
) -> Response {
    let (session, cookie) = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let now = state.engine.now_ms();
    let stats = match state.engine.store().stats(now).await {
        Ok(s) => s,
        Err(e) => return store_error(e),
    };
    let hours = 3;
    let from = now - hours * 3_600_000;
    let from = from - from.rem_euclid(60_000);
    let counts = match state.engine.store().attempt_counts(from, 60_000).await {
        Ok(c) => c,
        Err(e) => return store_error(e),
    };
    let states = [
        MessageState::Pending,
        MessageState::Delivered,
        MessageState::Parked,
        MessageState::Discarded,
    ];
    let total = |st: MessageState| -> u64 {
        stats
            .by_destination_state
            .iter()
            .filter(|(_, s, _)| *s == st)
            .map(|(_, _, n)| n)
            .sum()
    };
    let mut body = String::from("<h1>Overview</h1>");
    if let Some(disk) = state.engine.store().disk().filter(|d| d.low) {
        body.push_str(&format!(
            "<div class=\"error\" id=\"disk-low\">The disk holding the database has {} free (free pages inside it included, {} kept for the WAL's growth), below <code>min_free_disk</code> ({}). New messages are refused with 507 until delivered and discarded messages are purged (early, oldest first) or space is freed; delivery goes on.</div>",
            redrive_core::size::format_size(disk.free_bytes),
            redrive_core::size::format_size(disk.wal_reserve_bytes),
            redrive_core::size::format_size(disk.min_free_bytes)
        ));
    }
    body.push_str("<div class=\"stats\">");
    for st in states {
        let link = if st == MessageState::Parked {
            "<a href=\"/parked\">see them</a>"
        } else {
            ""
        };
        body.push_str(&format!(
            "<div class=\"stat\"><span class=\"badge state-{0}\">{0}</span><b>{1}</b>{link}</div>",
            st.as_str(),
            total(st)
        ));
    }
    let oldest = match stats.oldest_due_at {
        Some(t) if t <= now => format!("due for {}", human_ms((now - t) as u64)),
        Some(t) => format!("next due in {}", human_ms((t - now) as u64)),
        None => "nothing pending".to_owned(),
    };
    body.push_str(&format!(
        "<div class=\"stat\"><span class=\"muted\">oldest due message</span><b>{}</b></div></div>",
        esc(&oldest)
    ));
    body.push_str(&format!(
        "<section class=\"card\"><h2>Attempts per minute by error class, last {hours} hours</h2>{}</section>",
        html::attempts_chart(&counts, from, now + 60_000 - now.rem_euclid(60_000), 60_000)
    ));
    body.push_str("<section class=\"card\"><h2>Messages by destination</h2><table><tr><th>destination</th><th>circuit</th>");
    for st in states {
        body.push_str(&format!("<th class=\"num\">{}</th>", st.as_str()));
    }
    body.push_str("</tr>");
    let mut counts: HashMap<(&str, MessageState), u64> = HashMap::new();
    for (d, st, n) in &stats.by_destination_state {
        *counts.entry((d.as_str(), *st)).or_default() += n;
    }
    // The destinations holding messages, and every configured one while
    // they are few: a deployment with 10,000 idle ones lists what matters.
    let configured = state.engine.destination_count();
    let mut names: Vec<&str> = counts.keys().map(|(d, _)| *d).collect();
    let all = if configured <= FEW_DESTINATIONS {
        state.engine.destinations()
    } else {
        Vec::new()
    };
    names.extend(all.iter().map(|d| d.name.as_str()));
    names.sort_unstable();
    names.dedup();
    for name in &names {
        let circuit = state.engine.circuit(name).map_or("unknown", |c| c.as_str());
        body.push_str(&format!(
            "<tr><td>{}</td><td class=\"circuit-{circuit}\">{circuit}</td>",
            esc(name)
        ));
        for st in states {
            let n = counts.get(&(*name, st)).copied().unwrap_or(0);
            let cell = if st == MessageState::Parked && n > 0 {
                format!("<a href=\"/parked?destination={}\">{n}</a>", q(name))
            } else {
                n.to_string()
            };
            body.push_str(&format!("<td class=\"num\">{cell}</td>"));
        }
        body.push_str("</tr>");
    }
    let quiet = configured.saturating_sub(
        names
            .iter()
            .filter(|n| state.engine.destination(n).is_some())
            .count(),
    );
    if configured > FEW_DESTINATIONS && quiet > 0 {
        body.push_str(&format!(
            "<tr><td colspan=\"{}\" class=\"muted\">and {quiet} more configured destinations that hold no messages (<a href=\"/destinations\">destinations</a>)</td></tr>",
            states.len() + 2
        ));
    }
    body.push_str("</table></section>");
    body.push_str(&inbound_card(&state.inbound));
    respond(page("Overview", "/", Some(&session), &body), cookie)
}

/// What each inbound source received since this process started (the
/// counters of `redrive_inbound_*_total`), with a link to its parked
/// messages. Nothing when no source is configured.
fn inbound_card(inbound: &crate::inbound::Inbound) -> String {
    let counts = inbound.counts();
    if counts.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<section class=\"card\" id=\"inbound\"><h2>Inbound sources, since this process started</h2>\
         <table><tr><th>source</th><th>path</th><th>delivered to</th><th class=\"num\">accepted</th>\
         <th class=\"num\">sent again (deduplicated)</th><th class=\"num\">refused</th><th></th></tr>",
    );
    for (c, s) in counts.iter().zip(inbound.sources()) {
        out.push_str(&format!(
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td><a href=\"/parked?source={}\">parked</a></td></tr>",
            esc(&c.name),
            esc(&s.path),
            esc(&c.destination),
            c.accepted,
            c.deduped,
            c.refused,
            q(&c.name)
        ));
    }
    out.push_str("</table></section>");
    out
}
