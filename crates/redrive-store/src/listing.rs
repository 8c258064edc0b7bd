//! The order of a listing and the cursor that resumes it.
//!
//! Each state is listed in the order of the index that already holds it, so
//! that no page sorts a state's messages and no message keeps an index entry
//! for listing alone: pending messages by when they are due (the claims'
//! index), delivered ones by when they were delivered (the retention's
//! index), the rest by id. An index of every message by state and id, kept
//! only for lists, cost the drain three B-tree changes per message (an entry
//! at enqueue, one deleted and one inserted at delivery): 9% of its
//! instructions (BENCHMARKS.md).

use std::fmt;

use crate::model::{Filter, MessageState};

/// The order of a listing, chosen by the state it filters on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListOrder {
    /// By id (ids grow with time: oldest first): every state together, and
    /// parked and discarded messages.
    Id,
    /// Pending messages by when they are due, then by id: the next to be
    /// attempted first. A due time moves when the message is claimed
    /// (PostgreSQL writes the lease's end) or rescheduled, so a listing taken
    /// while the engine runs may show a message twice, or miss one.
    Due,
    /// Delivered messages by when they were delivered, then by id.
    Delivered,
}

impl ListOrder {
    /// The order of a listing with `filter`.
    pub fn of(filter: &Filter) -> Self {
        match filter.state {
            Some(MessageState::Pending) => ListOrder::Due,
            Some(MessageState::Delivered) => ListOrder::Delivered,
            Some(MessageState::Parked | MessageState::Discarded) | None => ListOrder::Id,
        }
    }

    /// For an order by time, the state it lists and the column of its time.
    pub fn by_time(self) -> Option<(MessageState, &'static str)> {
        match self {
            ListOrder::Id => None,
            ListOrder::Due => Some((MessageState::Pending, "next_attempt_at")),
            ListOrder::Delivered => Some((MessageState::Delivered, "updated_at")),
        }
    }

    /// What a listing in this order is called in an error.
    fn listing(self) -> &'static str {
        match self {
            ListOrder::Id => "messages by id",
            ListOrder::Due => "pending messages",
            ListOrder::Delivered => "delivered messages",
        }
    }
}

/// Where a listing resumes: the sort key of the last message of the page
/// before. Clients see it as opaque text (`Page::next`): an id (ids never
/// hold a dot), or for the orders by time a letter naming the order (`p`
/// for pending, `d` for delivered), the time, a dot and the id, so that a
/// cursor of one listing is never read as one of another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// After this id ([`ListOrder::Id`]).
    Id(String),
    /// After this time and id, in this order ([`ListOrder::Due`],
    /// [`ListOrder::Delivered`]).
    At(ListOrder, i64, String),
}

/// A cursor that does not belong to the listing it was given to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cursor `{text}` is not one of a listing of {listing}: pass the next_cursor of the page before, with the same filter")]
pub struct BadCursor {
    text: String,
    listing: &'static str,
}

impl ListOrder {
    /// The letter that starts a cursor in this order.
    fn tag(self) -> char {
        match self {
            ListOrder::Id => 'i',
            ListOrder::Due => 'p',
            ListOrder::Delivered => 'd',
        }
    }
}

impl Cursor {
    /// Reads the text of `Page::next` for a listing in `order`.
    pub fn parse(text: &str, order: ListOrder) -> Result<Self, BadCursor> {
        let bad = || BadCursor {
            text: text.to_owned(),
            listing: order.listing(),
        };
        match order {
            ListOrder::Id if text.is_empty() || text.contains('.') => Err(bad()),
            ListOrder::Id => Ok(Cursor::Id(text.to_owned())),
            ListOrder::Due | ListOrder::Delivered => {
                let rest = text.strip_prefix(order.tag()).ok_or_else(bad)?;
                let (at, id) = rest.split_once('.').ok_or_else(bad)?;
                let at = at.parse::<i64>().map_err(|_| bad())?;
                if id.is_empty() {
                    return Err(bad());
                }
                Ok(Cursor::At(order, at, id.to_owned()))
            }
        }
    }

    /// The cursor after the message `id` whose key in `order` is `at` (a
    /// time; ignored in the order by id).
    pub fn after(order: ListOrder, at: i64, id: String) -> Self {
        match order {
            ListOrder::Id => Cursor::Id(id),
            ListOrder::Due | ListOrder::Delivered => Cursor::At(order, at, id),
        }
    }

    /// The time part; the earliest time for a cursor by id.
    pub fn at(&self) -> i64 {
        match self {
            Cursor::Id(_) => i64::MIN,
            Cursor::At(_, at, _) => *at,
        }
    }

    /// The id part, for every order.
    pub fn id(&self) -> &str {
        match self {
            Cursor::Id(id) | Cursor::At(_, _, id) => id,
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cursor::Id(id) => f.write_str(id),
            Cursor::At(order, at, id) => write!(f, "{}{at}.{id}", order.tag()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(s: MessageState) -> Filter {
        Filter {
            state: Some(s),
            ..Filter::default()
        }
    }

    #[test]
    fn each_state_has_the_order_of_its_index() {
        assert_eq!(ListOrder::of(&Filter::default()), ListOrder::Id);
        assert_eq!(ListOrder::of(&state(MessageState::Pending)), ListOrder::Due);
        assert_eq!(
            ListOrder::of(&state(MessageState::Delivered)),
            ListOrder::Delivered
        );
        assert_eq!(ListOrder::of(&state(MessageState::Parked)), ListOrder::Id);
        assert_eq!(
            ListOrder::of(&state(MessageState::Discarded)),
            ListOrder::Id
        );
    }

    #[test]
    fn a_cursor_reads_back_what_it_wrote() {
        for (cursor, order) in [
            (Cursor::Id("01JABC".into()), ListOrder::Id),
            (
                Cursor::At(ListOrder::Due, 1_733_000_000_123, "01J".into()),
                ListOrder::Due,
            ),
            (
                Cursor::At(ListOrder::Delivered, -5, "01K".into()),
                ListOrder::Delivered,
            ),
        ] {
            let text = cursor.to_string();
            assert_eq!(Cursor::parse(&text, order), Ok(cursor));
        }
    }

    /// Each listing refuses the others' cursors, and malformed ones, naming
    /// the cursor and the listing.
    #[test]
    fn a_cursor_of_another_listing_is_refused_with_its_text() {
        let due = Cursor::At(ListOrder::Due, 12, "01J".into()).to_string();
        let delivered = Cursor::At(ListOrder::Delivered, 12, "01J".into()).to_string();
        for (text, order) in [
            ("01JABC", ListOrder::Due),
            ("01JABC", ListOrder::Delivered),
            (due.as_str(), ListOrder::Delivered),
            (due.as_str(), ListOrder::Id),
            (delivered.as_str(), ListOrder::Due),
            (delivered.as_str(), ListOrder::Id),
            ("px.01J", ListOrder::Due),
            ("p12.", ListOrder::Due),
            ("", ListOrder::Id),
        ] {
            let e = Cursor::parse(text, order).expect_err(text);
            let message = e.to_string();
            assert!(message.contains(&format!("`{text}`")), "{message}");
            assert!(message.contains(order.listing()), "{message}");
        }
    }
}
