//! Progress of large reliable messages (those sent as fragments): how much of each one the peer
//! has acknowledged, and how much of the one coming in has arrived. A game draws its progress
//! bar for a level or replay download from it.

use std::collections::VecDeque;

/// Which way a large message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferDirection {
    /// We send it; progress is what the peer acknowledged.
    Sending,
    /// We receive it; progress is what arrived.
    Receiving,
}

/// Where one large reliable message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// Sending or receiving.
    pub direction: TransferDirection,
    /// The message's type (its registered id).
    pub kind: u32,
    /// Tells transfers with one peer apart: the reliable stream's number of the message's
    /// first fragment (the same on both sides).
    pub id: u64,
    /// Bytes done: acknowledged by the peer when sending, arrived when receiving.
    pub done: usize,
    /// The message's size in bytes.
    pub total: usize,
}

impl Transfer {
    /// Whether it is complete.
    pub fn is_done(&self) -> bool {
        self.done >= self.total
    }
}

/// Outgoing transfers tracked before completed ones are dropped unreported.
const MAX_TRACKED: usize = 256;

/// Fragmented messages received whole and not reported yet, at most (older ones go unreported).
pub(crate) const MAX_RECEIVED_WHOLE: usize = 16;

/// One fragmented message we sent: its fragments are reliable records `first..=last`, each
/// `chunk` bytes but the last.
#[derive(Debug, Clone, Copy)]
struct Outgoing {
    kind: u32,
    first: u64,
    last: u64,
    total: usize,
    chunk: usize,
}

/// Fragmented messages we sent, until they are reported acknowledged in full.
#[derive(Debug, Clone, Default)]
pub(crate) struct OutgoingTransfers {
    items: VecDeque<Outgoing>,
}

impl OutgoingTransfers {
    /// A message of `total` bytes went into the stream as records `first..=last` of `chunk`
    /// bytes each (the last one shorter); every record before `acked` is acknowledged.
    pub(crate) fn started(
        &mut self,
        kind: u32,
        (first, last): (u64, u64),
        total: usize,
        chunk: usize,
        acked: u64,
    ) {
        // Nobody polling (the core without the plugin) must not make this grow: past a few
        // hundred, completed ones go unreported.
        if self.items.len() >= MAX_TRACKED {
            self.items.retain(|t| acked <= t.last);
        }
        self.items.push_back(Outgoing {
            kind,
            first,
            last,
            total,
            chunk: chunk.max(1),
        });
    }

    /// Where each stands, given that the peer acknowledged every record before `acked`;
    /// those reported complete are forgotten.
    pub(crate) fn poll(&mut self, acked: u64, out: &mut impl FnMut(Transfer)) {
        for t in &self.items {
            let fragments = acked.saturating_sub(t.first).min(t.last - t.first + 1);
            out(Transfer {
                direction: TransferDirection::Sending,
                kind: t.kind,
                id: t.first,
                done: (fragments as usize).saturating_mul(t.chunk).min(t.total),
                total: t.total,
            });
        }
        self.items.retain(|t| acked <= t.last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(t: &mut OutgoingTransfers, acked: u64) -> Vec<(u64, usize)> {
        let mut seen = vec![];
        t.poll(acked, &mut |t| seen.push((t.id, t.done)));
        seen
    }

    #[test]
    fn sending_progress_follows_the_acks_and_ends_once() {
        let mut t = OutgoingTransfers::default();
        // 10 000 bytes in fragments of 4 000: records 5, 6, 7.
        t.started(1, (5, 7), 10_000, 4_000, 5);
        assert_eq!(poll(&mut t, 5), vec![(5, 0)]);
        assert_eq!(poll(&mut t, 6), vec![(5, 4_000)]);
        assert_eq!(poll(&mut t, 7), vec![(5, 8_000)]);
        assert_eq!(
            poll(&mut t, 8),
            vec![(5, 10_000)],
            "complete: reported once"
        );
        assert_eq!(poll(&mut t, 9), vec![]);
    }
}
