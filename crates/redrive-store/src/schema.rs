//! Schema migrations written the same in SQLite's and PostgreSQL's dialect.
//!
//! Each store lists its migrations in order; the first (the tables) differs by
//! dialect, the later ones are these, shared so that the two schemas cannot
//! drift apart.

/// Migration 2. Claims order by (next_attempt_at, id): an index in that order
/// lets a claim read the first rows instead of sorting every due one.
pub const DUE_IN_CLAIM_ORDER: &str = "
DROP INDEX messages_due;
CREATE INDEX messages_due ON messages (next_attempt_at, id) WHERE state = 'pending';
";

/// Migration 3. Claims name the destinations they have room for: this index
/// lets each read only that destination's due rows, however many wait for
/// others.
pub const DUE_BY_DESTINATION: &str = "
CREATE INDEX messages_due_by_destination ON messages (destination, next_attempt_at, id) WHERE state = 'pending';
";

/// Migration 4. Every index is paid for on each claim and record. The global
/// due index is answered by the per-destination one (a skip scan over
/// destinations); the purge needs only finished messages by age.
pub const FEWER_INDEXES: &str = "
DROP INDEX messages_due;
DROP INDEX messages_by_update;
CREATE INDEX messages_finished ON messages (updated_at) WHERE state IN ('delivered', 'discarded');
";

/// Migration 5. Each state is listed in the order of an index it needs
/// anyway (see `listing`): the index of every message by state and id, which
/// each delivery changed twice, gives way to small ones. Delivered messages
/// by destination and delivery time serve their listing and the retention
/// purge (one destination at a time); parked and discarded messages, few and
/// waiting for a person, keep an index by destination and id.
pub const LISTS_BY_STATE_ORDER: &str = "
DROP INDEX messages_by_state;
DROP INDEX messages_finished;
CREATE INDEX messages_delivered ON messages (destination, updated_at, id) WHERE state = 'delivered';
CREATE INDEX messages_parked ON messages (destination, id) WHERE state = 'parked';
CREATE INDEX messages_discarded ON messages (destination, id) WHERE state = 'discarded';
";

/// Migration 8 on SQLite, 7 on PostgreSQL: a message received on an inbound
/// source names it. Only such messages have an entry in its index (written
/// once, at enqueue), which lists a source's messages by id.
pub const SOURCES: &str = "
ALTER TABLE messages ADD COLUMN source TEXT;
CREATE INDEX messages_by_source ON messages (source, id) WHERE source IS NOT NULL;
";

/// Migration 7 on SQLite, 6 on PostgreSQL: what people do. A message keeps
/// its request's revision and a person's resolution; every attempt names the
/// revision it sent; the revisions, the paused destinations and the audit
/// have tables of their own. The dialects differ in three words: a time's
/// integer type, a body's, and the audit's counter.
macro_rules! people_migration {
    ($time:literal, $bytes:literal, $seq:literal, $table_options:literal) => {
        concat!(
            "ALTER TABLE messages ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
ALTER TABLE messages ADD COLUMN resolution TEXT;
ALTER TABLE attempts ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
CREATE TABLE revisions (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    n          INTEGER NOT NULL,
    created_at ",
            $time,
            " NOT NULL,
    actor      TEXT,
    note       TEXT,
    method     TEXT NOT NULL,
    path       TEXT NOT NULL,
    headers    TEXT NOT NULL,
    body       ",
            $bytes,
            " NOT NULL,
    PRIMARY KEY (message_id, n)
)",
            $table_options,
            ";
CREATE TABLE audit (
    seq    ",
            $seq,
            " PRIMARY KEY,
    at     ",
            $time,
            " NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_by_actor ON audit (actor, seq);
CREATE TABLE pauses (
    destination TEXT PRIMARY KEY,
    paused_by   TEXT NOT NULL,
    paused_at   ",
            $time,
            " NOT NULL,
    note        TEXT
);"
        )
    };
}

/// [`people_migration!`] in SQLite's words.
pub const PEOPLE_SQLITE: &str = people_migration!("INTEGER", "BLOB", "INTEGER", " WITHOUT ROWID");
/// [`people_migration!`] in PostgreSQL's words.
pub const PEOPLE_POSTGRES: &str = people_migration!("BIGINT", "BYTEA", "BIGSERIAL", "");
