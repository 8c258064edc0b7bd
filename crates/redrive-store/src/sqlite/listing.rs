//! The listings' SQL: a filter as a clause, and the two orders a state is
//! listed in (by id, or by time), each read through an index that state
//! needs anyway, per destination when the index leads with it.

use super::*;

/// `(clause, values)` for a filter, AND-ed after `WHERE 1 = 1`.
pub(super) fn filter_sql(f: &Filter, params: &mut Vec<rusqlite::types::Value>) -> String {
    use rusqlite::types::Value;
    let mut sql = String::new();
    if let Some(s) = f.state {
        // A literal, not a parameter: SQLite uses a partial index (each
        // state's own, see `listing`) only for a query that names its state.
        sql.push_str(&format!(" AND state = '{}'", s.as_str()));
    }
    if let Some(d) = &f.destination {
        sql.push_str(" AND destination = ?");
        params.push(Value::Text(d.clone()));
    }
    sql.push_str(&narrowing_sql(f, params));
    sql
}

/// `AND ...` clauses for the parts of a filter beyond its state and
/// destination.
pub(super) fn narrowing_sql(f: &Filter, params: &mut Vec<rusqlite::types::Value>) -> String {
    use rusqlite::types::Value;
    let mut sql = String::new();
    if let Some(c) = &f.class {
        sql.push_str(" AND last_class = ?");
        params.push(Value::Text(c.clone()));
    }
    if let Some(r) = &f.reason {
        sql.push_str(" AND park_reason = ?");
        params.push(Value::Text(r.clone()));
    }
    if let Some(t) = f.since {
        sql.push_str(" AND updated_at >= ?");
        params.push(Value::Integer(t));
    }
    if let Some(s) = &f.source {
        sql.push_str(" AND source = ?");
        params.push(Value::Text(s.clone()));
    }
    sql
}

/// Each destination holding messages in `state`, in name order, by a skip
/// scan of the state's index: one probe per destination.
pub(super) fn destinations_in(state: MessageState) -> String {
    let index = index_of(state);
    let state = state.as_str();
    format!(
        "WITH RECURSIVE d(name) AS ( \
           SELECT MIN(destination) FROM messages INDEXED BY {index} WHERE state = '{state}' \
           UNION ALL \
           SELECT (SELECT MIN(destination) FROM messages INDEXED BY {index} \
                   WHERE state = '{state}' AND destination > d.name) \
           FROM d WHERE d.name IS NOT NULL) \
         SELECT name FROM d WHERE name IS NOT NULL"
    )
}

/// The index that holds the messages in `state` by destination.
pub(super) fn index_of(state: MessageState) -> &'static str {
    match state {
        MessageState::Pending => "messages_due_by_destination",
        MessageState::Delivered => "messages_delivered",
        MessageState::Parked => "messages_parked",
        MessageState::Discarded => "messages_discarded",
    }
}

/// The destinations holding messages in `state`.
pub(super) fn destinations_holding(
    conn: &Connection,
    state: MessageState,
) -> Result<Vec<String>, StoreError> {
    conn.prepare_cached(&destinations_in(state))
        .map_err(db)?
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)
}

/// The first `limit` messages `filter` matches after `cursor`, in id order,
/// each read by `read` from the columns `columns`.
///
/// The index by state orders each destination's messages by id, not a
/// whole state's: a filter on a state alone made SQLite sort every message
/// in that state for one page (all 10,000,000 delivered ones, say). Such a
/// filter reads each destination in order instead, `limit` at most from
/// each, and keeps the first `limit` of them all.
pub(super) fn in_id_order<T>(
    conn: &Connection,
    columns: &str,
    filter: &Filter,
    cursor: Option<&str>,
    limit: usize,
    read: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
    id: impl Fn(&T) -> &str,
) -> Result<Vec<T>, StoreError> {
    let (Some(state), None) = (filter.state, &filter.destination) else {
        return in_id_order_by_index(conn, columns, filter, cursor, limit, &read);
    };
    let destinations = destinations_holding(conn, state)?;
    let mut rows = Vec::new();
    for destination in destinations {
        let one = Filter {
            destination: Some(destination),
            ..filter.clone()
        };
        rows.extend(in_id_order_by_index(
            conn, columns, &one, cursor, limit, &read,
        )?);
        // The first `limit` so far, so that at most twice `limit` rows are
        // held however many destinations there are. SQLite compares text
        // bytewise, as `str` does.
        rows.sort_by(|a, b| id(a).cmp(id(b)));
        rows.truncate(limit);
    }
    Ok(rows)
}

/// One query of [`in_id_order`]: the index gives the order when the filter
/// names a destination (and a state), or names no state at all.
pub(super) fn in_id_order_by_index<T>(
    conn: &Connection,
    columns: &str,
    filter: &Filter,
    cursor: Option<&str>,
    limit: usize,
    read: &impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let (sql, values) = id_order_query(columns, filter, cursor, limit);
    conn.prepare_cached(&sql)
        .map_err(db)?
        .query_map(rusqlite::params_from_iter(values), |r| read(r))
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)
}

/// The statement of [`in_id_order_by_index`] and its values.
pub(super) fn id_order_query(
    columns: &str,
    filter: &Filter,
    cursor: Option<&str>,
    limit: usize,
) -> (String, Vec<rusqlite::types::Value>) {
    let mut values = Vec::new();
    // Parked and discarded messages by their own index (destination, id);
    // without a state, by id.
    let index = match filter.state {
        Some(s @ (MessageState::Parked | MessageState::Discarded)) => {
            format!(" INDEXED BY {}", index_of(s))
        }
        _ => String::new(),
    };
    let mut sql = format!("SELECT {columns} FROM messages{index} WHERE 1 = 1");
    sql.push_str(&filter_sql(filter, &mut values));
    if let Some(c) = cursor {
        sql.push_str(" AND id > ?");
        values.push(rusqlite::types::Value::Text(c.to_owned()));
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    values.push(rusqlite::types::Value::Integer(
        i64::try_from(limit).unwrap_or(i64::MAX),
    ));
    (sql, values)
}

/// The first `limit` messages `filter` matches after `cursor` in a listing
/// by time (`key`: the state and its time column, see
/// [`ListOrder::by_time`]), each with its time.
///
/// Each destination's messages in the state are read in the order of the
/// state's index (destination, time, id), `limit` at most from each, and
/// the first `limit` of them all kept: no query sorts a state's messages.
pub(super) fn in_time_order(
    conn: &Connection,
    key: (MessageState, &str),
    filter: &Filter,
    cursor: Option<&Cursor>,
    limit: usize,
) -> Result<Vec<(i64, Message)>, StoreError> {
    let state = key.0;
    let (sql, mut values) = time_order_query(key, filter, cursor, limit);
    let destinations = match &filter.destination {
        Some(d) => vec![d.clone()],
        None => destinations_holding(conn, state)?,
    };
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let mut rows: Vec<(i64, Message)> = Vec::new();
    for destination in destinations {
        values[0] = rusqlite::types::Value::Text(destination);
        let page = stmt
            .query_map(rusqlite::params_from_iter(values.iter()), |r| {
                Ok((
                    r.get::<_, Option<i64>>(COLUMN_COUNT)?.unwrap_or(i64::MIN),
                    message_from_row(r)?,
                ))
            })
            .map_err(db)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db)?;
        rows.extend(page);
        // The first `limit` so far, so that at most twice `limit` rows are
        // held however many destinations there are.
        rows.sort_by(|(a, x), (b, y)| (a, &x.id).cmp(&(b, &y.id)));
        rows.truncate(limit);
    }
    Ok(rows)
}

/// One destination's query of [`in_time_order`] and its values (the
/// destination is the first value, to be set): `COLUMNS`, then the time.
pub(super) fn time_order_query(
    (state, time): (MessageState, &str),
    filter: &Filter,
    cursor: Option<&Cursor>,
    limit: usize,
) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut values = vec![Value::Null];
    let mut sql = format!(
        "SELECT {COLUMNS}, {time} FROM messages INDEXED BY {} \
         WHERE state = '{}' AND destination = ?1",
        index_of(state),
        state.as_str()
    );
    sql.push_str(&narrowing_sql(filter, &mut values));
    if let Some(c) = cursor {
        sql.push_str(&format!(" AND ({time}, id) > (?, ?)"));
        values.push(Value::Integer(c.at()));
        values.push(Value::Text(c.id().to_owned()));
    }
    sql.push_str(&format!(" ORDER BY {time}, id LIMIT ?"));
    values.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    (sql, values)
}
