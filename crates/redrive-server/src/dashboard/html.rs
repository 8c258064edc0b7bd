//! HTML without a template engine: an escaping function, the page layout, and
//! two SVG drawings (the attempts chart, a policy's timeline). Everything is
//! rendered on the server; the pages need no script and no network.

use std::fmt::Write as _;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
pub fn q(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A whole page: head, navigation, the body, and a sign-out form.
pub fn page(
    title: &str,
    active: &str,
    session: Option<&super::session::Session>,
    body: &str,
) -> String {
    let nav = [
        ("/", "Overview"),
        ("/parked", "Parked"),
        ("/destinations", "Destinations"),
        ("/audit", "Audit"),
    ]
    .iter()
    .map(|(href, label)| {
        let class = if *href == active {
            " class=\"active\""
        } else {
            ""
        };
        format!("<a href=\"{href}\"{class}>{label}</a>")
    })
    .collect::<String>();
    let signout = match session {
        Some(s) => format!(
            "<span class=\"who\" id=\"who\">{} <span class=\"muted\">({})</span></span>\
             <form method=\"post\" action=\"/logout\" class=\"signout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>Sign out</button></form>",
            esc(&s.caller.name),
            s.caller.role,
            esc(&s.csrf)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · redrive</title><link rel=\"stylesheet\" href=\"/assets/style.css\"></head>\
         <body><header><span class=\"brand\">redrive</span><nav>{nav}</nav>{signout}</header><main>{body}</main></body></html>",
        esc(title)
    )
}

/// The colour of an error class in charts and badges.
pub fn class_colour(class: &str) -> &'static str {
    match class {
        "success" => "#2e7d32",
        "content" => "#c62828",
        "auth" => "#6a1b9a",
        "not_found" => "#8e24aa",
        "conflict" => "#ad1457",
        "rate_limited" => "#ef6c00",
        "timeout" => "#f9a825",
        "server" => "#d84315",
        "network_unsent" => "#1565c0",
        "network_indeterminate" => "#00838f",
        _ => "#546e7a",
    }
}

/// A stacked bar chart of attempts per minute and class.
pub fn attempts_chart(
    buckets: &[(i64, String, u64)],
    from: i64,
    to: i64,
    bucket_ms: i64,
) -> String {
    let n = ((to - from) / bucket_ms).max(1) as usize;
    let mut columns: Vec<Vec<(&str, u64)>> = vec![Vec::new(); n];
    let mut classes: Vec<&str> = Vec::new();
    for (b, class, count) in buckets {
        let i = ((b - from) / bucket_ms).clamp(0, n as i64 - 1) as usize;
        columns[i].push((class.as_str(), *count));
        if !classes.contains(&class.as_str()) {
            classes.push(class.as_str());
        }
    }
    let max = columns
        .iter()
        .map(|c| c.iter().map(|(_, n)| n).sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, h) = (900.0, 160.0);
    let bar = w / n as f64;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {}\" role=\"img\" aria-label=\"attempts per minute by error class\">",
        h + 20.0
    );
    for (i, col) in columns.iter().enumerate() {
        let mut y = h;
        for (class, count) in col {
            let bh = *count as f64 / max as f64 * h;
            y -= bh;
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>{count} {}</title></rect>",
                i as f64 * bar,
                (bar - 1.0).max(0.5),
                class_colour(class),
                esc(class)
            );
        }
    }
    let _ = write!(
        svg,
        "<line x1=\"0\" y1=\"{h}\" x2=\"{w}\" y2=\"{h}\" stroke=\"#999\"/><text x=\"0\" y=\"{}\">-{}h</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">now · peak {max}/min</text></svg>",
        h + 15.0,
        (to - from) / 3_600_000,
        w,
        h + 15.0
    );
    // Swatches are SVG (fill is an attribute), so the page needs no inline style.
    let legend: String = classes
        .iter()
        .map(|c| {
            format!(
                "<span class=\"legend\"><svg width=\"10\" height=\"10\"><rect width=\"10\" height=\"10\" fill=\"{}\"/></svg> {}</span>",
                class_colour(c),
                esc(c)
            )
        })
        .collect();
    format!("{svg}<div>{legend}</div>")
}

/// A policy's schedule as dots on a time line (square-root scale, so seconds
/// and days both show).
pub fn timeline_svg(steps: &[(u32, u64)]) -> String {
    let last = steps.last().map_or(1, |s| s.1.max(1)) as f64;
    let (w, h) = (600.0, 40.0);
    let mut svg = format!("<svg class=\"timeline\" viewBox=\"0 0 {w} {h}\"><line x1=\"10\" y1=\"20\" x2=\"{}\" y2=\"20\" stroke=\"#999\"/>", w - 10.0);
    for (attempt, at) in steps {
        let x = 10.0 + ((*at as f64) / last).sqrt() * (w - 20.0);
        let label = crate::views::human_ms(*at);
        let _ = write!(
            svg,
            "<circle cx=\"{x:.1}\" cy=\"20\" r=\"5\" fill=\"#1565c0\"><title>attempt {attempt} at +{label}</title></circle><text x=\"{x:.1}\" y=\"36\" text-anchor=\"middle\">{attempt}</text>"
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
