//! Which destinations may have a message due, and from when: the
//! scheduler's knowledge, kept in memory so that a claim names only
//! destinations with something to take and the scheduler sleeps until the
//! earliest due time.
//!
//! Each destination has at most one entry, a time at which a claim should
//! ask it again. The time is a lower bound: asking early costs one empty
//! claim, asking late makes messages late. Entries move earlier, never
//! later, except when a claim takes one (it pops the entry) and puts back
//! what it learnt: "more may be due now" when it got all it asked for, else
//! the store's next due time after the claim (`Store::due_after`). Notes that
//! come while a claim runs (an enqueue, a retry recorded, another node's
//! notification) are kept beside it and the earlier of the two wins, so a
//! claim's older snapshot never hides them.
//!
//! Entries are ordered by time, then by when they were noted: the
//! destination whose message has waited longest is asked first, and one
//! whose backlog filled its claim goes back behind every destination that
//! was due before that claim. A destination with a backlog of a million
//! therefore never delays one with a single message.
//!
//! Nothing here is visited per destination configured: 10,000 idle
//! destinations cost no entries and no work.

use std::collections::BTreeSet;

/// A destination's place: its index in the engine's list.
pub(crate) type Index = usize;

/// The entries, in due order.
#[derive(Debug, Default)]
pub(crate) struct DueSchedule {
    /// Each destination's entry (time, sequence), by index.
    at: Vec<Option<(i64, u64)>>,
    /// Every entry as (time, sequence, index): the order claims ask in.
    queue: BTreeSet<(i64, u64, Index)>,
    /// Notes so far, to order entries of one time by when they came.
    seq: u64,
}

impl DueSchedule {
    /// No destination due, for `n` destinations.
    pub(crate) fn new(n: usize) -> Self {
        DueSchedule {
            at: vec![None; n],
            queue: BTreeSet::new(),
            seq: 0,
        }
    }

    /// Notes that destination `i` may have a message due at `t`: its entry
    /// moves to `t` if that is earlier (or it had none). Returns whether
    /// the entry moved.
    pub(crate) fn note(&mut self, i: Index, t: i64) -> bool {
        let Some(slot) = self.at.get_mut(i) else {
            return false;
        };
        if let Some((old, seq)) = *slot {
            if old <= t {
                return false;
            }
            self.queue.remove(&(old, seq, i));
        }
        self.seq += 1;
        *slot = Some((t, self.seq));
        self.queue.insert((t, self.seq, i));
        true
    }

    /// Takes the entry due first, if it is due by `now`.
    pub(crate) fn pop_due(&mut self, now: i64) -> Option<(Index, i64)> {
        let &(t, seq, i) = self.queue.first()?;
        if t > now {
            return None;
        }
        self.queue.remove(&(t, seq, i));
        self.at[i] = None;
        Some((i, t))
    }

    /// The earliest entry's time.
    pub(crate) fn earliest(&self) -> Option<i64> {
        self.queue.first().map(|&(t, _, _)| t)
    }

    /// Destination `i`'s entry, if it has one.
    #[cfg(test)]
    pub(crate) fn of(&self, i: Index) -> Option<i64> {
        self.at.get(i).copied().flatten().map(|(t, _)| t)
    }
}

/// Shares `room` claims between destinations with `free` places each: every
/// destination gets the same share, except that one with fewer places gets
/// what it has and leaves the rest to the others (water-filling). With more
/// destinations than room, the first `room` get one each.
pub(crate) fn shares(room: usize, free: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..free.len()).collect();
    order.sort_by_key(|&k| free[k]);
    let mut out = vec![0; free.len()];
    let mut left = room;
    // Those with no more places than an equal share get them all.
    let mut filled = 0;
    while let Some(&k) = order.get(filled) {
        if free[k] > left / (order.len() - filled) {
            break;
        }
        out[k] = free[k];
        left -= free[k];
        filled += 1;
    }
    // The others get an equal share each, and what division leaves over
    // goes one each to the first of them in the order given.
    let mut rest = order.split_off(filled);
    if !rest.is_empty() {
        rest.sort_unstable();
        let (level, extra) = (left / rest.len(), left % rest.len());
        for (j, k) in rest.into_iter().enumerate() {
            out[k] = level + usize::from(j < extra);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_longest_waiting_destination_is_asked_first() {
        let mut s = DueSchedule::new(4);
        assert!(s.note(2, 100));
        assert!(s.note(0, 50));
        assert!(s.note(1, 100));
        assert!(!s.note(1, 120), "later: kept where it was");
        assert!(s.note(2, 80), "earlier: moved");
        assert_eq!(s.earliest(), Some(50));
        assert_eq!(s.pop_due(40), None, "nothing due yet");
        assert_eq!(s.pop_due(100), Some((0, 50)));
        assert_eq!(s.pop_due(100), Some((2, 80)));
        // A backlog put back at `now` goes behind what was due before.
        assert!(s.note(0, 100));
        assert_eq!(s.pop_due(100), Some((1, 100)));
        assert_eq!(s.pop_due(100), Some((0, 100)));
        assert_eq!(s.pop_due(1_000), None);
        assert_eq!(s.of(3), None);
        assert!(!s.note(9, 1), "an unknown index is ignored");
    }

    #[test]
    fn room_is_shared_fairly() {
        assert_eq!(shares(256, &[128, 128, 128]), vec![86, 85, 85]);
        assert_eq!(shares(256, &[1, 128, 1]), vec![1, 128, 1]);
        assert_eq!(shares(256, &[1, 1000, 300]), vec![1, 128, 127]);
        assert_eq!(shares(3, &[5, 5, 5, 5]), vec![1, 1, 1, 0]);
        assert_eq!(shares(0, &[5]), vec![0]);
        assert_eq!(shares(10, &[]), Vec::<usize>::new());
    }

    proptest! {
        /// Shares never exceed a destination's places or the room, use all
        /// the room the places allow, and differ by at most one between
        /// destinations that could take more.
        #[test]
        fn shares_are_fair(room in 0usize..600, free in proptest::collection::vec(0usize..300, 0..40)) {
            let got = shares(room, &free);
            prop_assert_eq!(got.len(), free.len());
            let total: usize = got.iter().sum();
            prop_assert_eq!(total, room.min(free.iter().sum()));
            for (g, f) in got.iter().zip(&free) {
                prop_assert!(g <= f);
            }
            let unfilled: Vec<usize> = got.iter().zip(&free).filter(|(g, f)| g < f).map(|(g, _)| *g).collect();
            let most = got.iter().copied().max().unwrap_or(0);
            if let Some(least) = unfilled.iter().copied().min() {
                prop_assert!(most <= least + 1, "{:?} of {:?}", got, free);
            }
        }

        /// An entry is never later than the earliest note since it was last
        /// taken.
        #[test]
        fn entries_keep_the_earliest_note(notes in proptest::collection::vec((0usize..5, 0i64..100), 0..60)) {
            let mut s = DueSchedule::new(5);
            let mut model = [None::<i64>; 5];
            for (i, t) in notes {
                s.note(i, t);
                model[i] = Some(model[i].map_or(t, |m: i64| m.min(t)));
            }
            for (i, m) in model.iter().enumerate() {
                prop_assert_eq!(s.of(i), *m);
            }
            let mut last = i64::MIN;
            while let Some((i, t)) = s.pop_due(i64::MAX) {
                prop_assert_eq!(Some(t), model[i]);
                prop_assert!(t >= last);
                last = t;
            }
        }
    }
}
