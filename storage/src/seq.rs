use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// 2024-01-01T00:00:00Z in Unix milliseconds: the epoch of `_seq` and snowflake ids.
pub const EPOCH_MS: u64 = 1_704_067_200_000;
const NODE_BITS: u32 = 10;
const COUNTER_BITS: u32 = 12;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;
/// The largest node id that fits the layout.
pub const MAX_NODE_ID: u16 = (1 << NODE_BITS) - 1;

/// Generates 63-bit ids: milliseconds since 2024-01-01 (41 bits), node id (10 bits), counter
/// (12 bits). Ids only grow: a clock step backwards keeps counting from the last id, and the
/// floor given at start (the persisted high-water mark) is never crossed downwards.
#[derive(Debug)]
pub struct SeqGenerator {
    node: u64,
    last: AtomicU64,
}

impl SeqGenerator {
    /// A generator for `node` whose ids are all greater than `floor`.
    pub fn new(node: u16, floor: u64) -> Self {
        Self {
            node: u64::from(node & MAX_NODE_ID),
            last: AtomicU64::new(floor),
        }
    }

    /// The next id.
    pub fn next_id(&self) -> u64 {
        let now = compose(now_ms(), self.node, 0);
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let candidate = if now > last {
                now
            } else if last & COUNTER_MASK == COUNTER_MASK {
                compose(millis_of(last) + 1, self.node, 0)
            } else {
                compose(millis_of(last), self.node, (last & COUNTER_MASK) + 1)
            };
            match self.last.compare_exchange_weak(
                last,
                candidate,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return candidate,
                Err(actual) => last = actual,
            }
        }
    }

    /// Hands out the next `n` ids (n >= 1) in one step, so that no other id falls between
    /// them: answers the first; [`successor`] gives the others in order.
    pub fn reserve(&self, n: u64) -> u64 {
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let now = compose(now_ms(), self.node, 0);
            let first = if now > last { now } else { successor(last) };
            let end = advance(first, n.saturating_sub(1));
            match self
                .last
                .compare_exchange_weak(last, end, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return first,
                Err(actual) => last = actual,
            }
        }
    }

    /// The greatest id handed out so far (or the floor).
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }
}

/// The id after `id` of the same node when no time passes: the next counter value, or the
/// next millisecond's first.
pub fn successor(id: u64) -> u64 {
    advance(id, 1)
}

/// The `k`-th id after `id` of the same node ([`successor`] `k` times).
pub fn advance(id: u64, k: u64) -> u64 {
    let node = (id >> COUNTER_BITS) & u64::from(MAX_NODE_ID);
    let counter = (id & COUNTER_MASK) + k;
    compose(
        millis_of(id) + (counter >> COUNTER_BITS),
        node,
        counter & COUNTER_MASK,
    )
}

/// Unix milliseconds at which an id was made.
pub fn unix_millis_of(id: u64) -> u64 {
    millis_of(id) + EPOCH_MS
}

/// The smallest id that can be made at Unix millisecond `unix_ms`.
pub fn first_id_at(unix_ms: u64) -> u64 {
    compose(unix_ms.saturating_sub(EPOCH_MS), 0, 0)
}

fn millis_of(id: u64) -> u64 {
    id >> (NODE_BITS + COUNTER_BITS)
}

fn compose(ms: u64, node: u64, counter: u64) -> u64 {
    (ms << (NODE_BITS + COUNTER_BITS)) | (node << COUNTER_BITS) | counter
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(EPOCH_MS)
        .saturating_sub(EPOCH_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_grow_and_carry_the_node() {
        let g = SeqGenerator::new(7, 0);
        let mut prev = 0;
        for _ in 0..100_000 {
            let id = g.next_id();
            assert!(id > prev);
            assert_eq!((id >> COUNTER_BITS) & u64::from(MAX_NODE_ID), 7);
            prev = id;
        }
    }

    #[test]
    fn floor_from_the_future_is_respected() {
        let future = compose(now_ms() + 60_000, 1, 5);
        let g = SeqGenerator::new(1, future);
        let id = g.next_id();
        assert!(id > future);
        assert_eq!(millis_of(id), millis_of(future));
    }

    #[test]
    fn a_reserved_block_is_whole_and_next_ids_follow_it() {
        let g = SeqGenerator::new(3, 0);
        let before = g.next_id();
        let first = g.reserve(10_000);
        assert!(first > before);
        let mut id = first;
        for _ in 1..10_000 {
            let next = successor(id);
            assert!(next > id);
            assert_eq!((next >> COUNTER_BITS) & u64::from(MAX_NODE_ID), 3);
            id = next;
        }
        assert_eq!(id, advance(first, 9_999));
        assert_eq!(g.last(), id);
        assert!(g.next_id() > id);
    }

    #[test]
    fn millis_round_trip() {
        let id = first_id_at(EPOCH_MS + 1234);
        assert_eq!(unix_millis_of(id), EPOCH_MS + 1234);
    }
}
