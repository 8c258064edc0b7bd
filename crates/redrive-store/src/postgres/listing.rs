//! The SQL of listings: a filter's clauses, each state's order (that of an
//! index it needs anyway, see `crate::listing`), and the stats by state.

use tokio_postgres::types::ToSql;

use super::COLUMNS;
use crate::listing::Cursor;
use crate::model::{Filter, MessageState};

pub(super) type Param = Box<dyn ToSql + Sync + Send>;

/// `AND ...` clauses for a filter, numbering parameters after `params`.
pub(super) fn filter_sql(f: &Filter, params: &mut Vec<Param>) -> String {
    let mut sql = String::new();
    if let Some(s) = f.state {
        // A literal, not a parameter: the planner uses a state's partial
        // index (see `listing`) only for a query that names its state.
        sql.push_str(&format!(" AND state = '{}'", s.as_str()));
    }
    if let Some(d) = &f.destination {
        params.push(Box::new(d.clone()));
        sql.push_str(&format!(" AND destination = ${}", params.len()));
    }
    sql.push_str(&narrowing_sql(f, params));
    sql
}

/// `AND ...` clauses for the parts of a filter beyond its state and
/// destination, numbering parameters after `params`.
fn narrowing_sql(f: &Filter, params: &mut Vec<Param>) -> String {
    let mut sql = String::new();
    let mut add = |clause: &str, p: Param, params: &mut Vec<Param>| {
        params.push(p);
        sql.push_str(&format!(" AND {clause} ${}", params.len()));
    };
    if let Some(c) = &f.class {
        add("last_class =", Box::new(c.clone()), params);
    }
    if let Some(r) = &f.reason {
        add("park_reason =", Box::new(r.clone()), params);
    }
    if let Some(t) = f.since {
        add("updated_at >=", Box::new(t), params);
    }
    if let Some(s) = &f.source {
        add("source =", Box::new(s.clone()), params);
    }
    sql
}

/// Each destination holding messages in `state`, in name order, by a skip
/// scan of the state's index: one probe per destination (a recursive CTE
/// named `d`, its `name` NULL at the end).
pub(super) fn destinations_in(state: MessageState) -> String {
    let state = state.as_str();
    format!(
        "WITH RECURSIVE d(name) AS ( \
           SELECT MIN(destination) FROM messages WHERE state = '{state}' \
           UNION ALL \
           SELECT (SELECT MIN(destination) FROM messages WHERE state = '{state}' AND destination > d.name) \
           FROM d WHERE d.name IS NOT NULL)"
    )
}

/// `select` (a `SELECT ... WHERE ...` of `filter_sql`) in id order, as many
/// as the parameter numbered `limit` says, each row locked by `lock` (empty,
/// or a locking clause).
///
/// A state's index orders each destination's messages by id, not a whole
/// state's: with a state alone the planner walked the primary key and skipped
/// every message in other states (600 ms to list the 100,000 pending behind
/// 1,900,000 delivered). Each destination holding the state (a skip scan) is
/// read in order instead, and the pages merged.
pub(super) fn in_id_order(select: &str, filter: &Filter, limit: usize, lock: &str) -> String {
    match (filter.state, &filter.destination) {
        (Some(state), None) => format!(
            "{} SELECT m.* FROM d CROSS JOIN LATERAL \
               ({select} AND destination = d.name ORDER BY id LIMIT ${limit}{lock}) m \
             WHERE d.name IS NOT NULL ORDER BY m.id LIMIT ${limit}",
            destinations_in(state)
        ),
        _ => format!("{select} ORDER BY id LIMIT ${limit}{lock}"),
    }
}

/// A listing by time (`key`: the state and its time column, see
/// [`ListOrder::by_time`]) of what `filter` matches after `cursor`: each destination's
/// messages in the state read in the order of the state's index
/// (destination, time, id), and the pages merged. Its rows are `COLUMNS`,
/// then the time (`LIST_KEY`).
pub(super) fn in_time_order(
    (state, time): (MessageState, &str),
    filter: &Filter,
    cursor: Option<&Cursor>,
    limit: usize,
    params: &mut Vec<Param>,
) -> String {
    let mut select = format!(
        "SELECT {COLUMNS}, {time} AS list_key FROM messages WHERE state = '{}'",
        state.as_str()
    );
    let destination = match &filter.destination {
        Some(d) => {
            params.push(Box::new(d.clone()));
            format!("${}", params.len())
        }
        None => "d.name".to_owned(),
    };
    select.push_str(&format!(" AND destination = {destination}"));
    select.push_str(&narrowing_sql(filter, params));
    if let Some(c) = cursor {
        params.push(Box::new(c.at()));
        params.push(Box::new(c.id().to_owned()));
        select.push_str(&format!(
            " AND ({time}, id) > (${}, ${})",
            params.len() - 1,
            params.len()
        ));
    }
    params.push(Box::new(i64::try_from(limit).unwrap_or(i64::MAX)));
    let limit = params.len();
    select.push_str(&format!(" ORDER BY {time}, id LIMIT ${limit}"));
    if filter.destination.is_some() {
        return select;
    }
    format!(
        "{} SELECT m.* FROM d CROSS JOIN LATERAL ({select}) m \
         WHERE d.name IS NOT NULL ORDER BY m.list_key, m.id LIMIT ${limit}",
        destinations_in(state)
    )
}

/// Messages per destination and state, one `GROUP BY` per state.
pub(super) fn stats_by_state() -> String {
    [
        MessageState::Pending,
        MessageState::Delivered,
        MessageState::Parked,
        MessageState::Discarded,
    ]
    .iter()
    .map(|s| {
        let s = s.as_str();
        format!(
            "SELECT destination, '{s}'::TEXT, COUNT(*) FROM messages WHERE state = '{s}' GROUP BY destination"
        )
    })
    .collect::<Vec<_>>()
    .join(" UNION ALL ")
}

/// Where the time of a row of `in_time_order` is: after `COLUMNS`.
pub(super) const LIST_KEY: usize = super::COLUMN_COUNT;

pub(super) fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}
