//! The overview page: counts by state, the attempts chart, and the
//! messages by destination.

use super::*;

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
    let mut body = String::from("<h1>Overview</h1><div class=\"stats\">");
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
    let circuits: BTreeMap<String, &'static str> = state
        .engine
        .circuits()
        .into_iter()
        .map(|(n, c)| (n, c.as_str()))
        .collect();
    body.push_str("<section class=\"card\"><h2>Messages by destination</h2><table><tr><th>destination</th><th>circuit</th>");
    for st in states {
        body.push_str(&format!("<th class=\"num\">{}</th>", st.as_str()));
    }
    body.push_str("</tr>");
    let mut names: Vec<String> = state
        .engine
        .destinations()
        .iter()
        .map(|d| d.name.clone())
        .collect();
    names.extend(stats.by_destination_state.iter().map(|(d, _, _)| d.clone()));
    names.sort();
    names.dedup();
    for name in names {
        let circuit = circuits.get(&name).copied().unwrap_or("unknown");
        body.push_str(&format!(
            "<tr><td>{}</td><td class=\"circuit-{circuit}\">{circuit}</td>",
            esc(&name)
        ));
        for st in states {
            let n = stats
                .by_destination_state
                .iter()
                .find(|(d, s, _)| *d == name && *s == st)
                .map_or(0, |(_, _, n)| *n);
            let cell = if st == MessageState::Parked && n > 0 {
                format!("<a href=\"/parked?destination={}\">{n}</a>", q(&name))
            } else {
                n.to_string()
            };
            body.push_str(&format!("<td class=\"num\">{cell}</td>"));
        }
        body.push_str("</tr>");
    }
    body.push_str("</table></section>");
    respond(page("Overview", "/", Some(&session.csrf), &body), cookie)
}
