//! Delivery accounting: every acknowledged message is matched against what its recipient
//! actually received, by (chat, seq) and client_msg_id. Nothing is assumed.
//!
//! One [`Ledger`] per sender: in a direct chat the recipient of a sender's messages is fixed, so
//! the ledger records the sender's acknowledged `(seq, client_msg_id)` pairs and, in arrival
//! order, the `(seq, client_msg_id)` pairs its recipient received from it.

use std::collections::HashMap;

use serde::Serialize;
use tern_sdk::protocol::{ClientMsgId, Seq};

/// What one sender sent and its recipient got.
#[derive(Debug, Default)]
pub struct Ledger {
    acked: Vec<(Seq, ClientMsgId)>,
    received: Vec<(Seq, ClientMsgId)>,
}

impl Ledger {
    /// The server acknowledged `cmid` as `seq`.
    pub fn acked(&mut self, seq: Seq, cmid: ClientMsgId) {
        self.acked.push((seq, cmid));
    }

    /// The recipient received `seq` carrying `cmid` (call in arrival order).
    pub fn received(&mut self, seq: Seq, cmid: ClientMsgId) {
        self.received.push((seq, cmid));
    }

    /// Acknowledged messages not (yet) received, without the full check: for the grace wait.
    pub fn outstanding(&self) -> usize {
        self.acked.len().saturating_sub(self.received.len())
    }

    /// Matches every acknowledged message against the receptions.
    pub fn check(&self) -> Verdict {
        let mut v = Verdict {
            acked: self.acked.len() as u64,
            received: self.received.len() as u64,
            ..Verdict::default()
        };
        // seq -> (times received, client_msg_id of the first reception)
        let mut got: HashMap<Seq, (u64, ClientMsgId)> = HashMap::with_capacity(self.received.len());
        let mut highest: Option<Seq> = None;
        for &(seq, cmid) in &self.received {
            let e = got.entry(seq).or_insert((0, cmid));
            e.0 += 1;
            if e.0 > 1 {
                v.duplicates += 1;
                continue;
            }
            if highest.is_some_and(|h| seq < h) {
                v.out_of_order += 1;
            }
            highest = highest.max(Some(seq));
        }
        let mut acked_seqs: HashMap<Seq, ClientMsgId> = HashMap::with_capacity(self.acked.len());
        for &(seq, cmid) in &self.acked {
            if let Some(other) = acked_seqs.insert(seq, cmid)
                && other != cmid
            {
                // Two different sends acknowledged with the same seq: one of them is lost.
                v.mismatched += 1;
                v.lost += 1;
                continue;
            }
            match got.get(&seq) {
                None => v.lost += 1,
                Some((_, got_cmid)) if *got_cmid != cmid => {
                    v.mismatched += 1;
                    v.lost += 1;
                }
                Some(_) => v.matched += 1,
            }
        }
        v.unacked_received = got.keys().filter(|s| !acked_seqs.contains_key(s)).count() as u64;
        v
    }
}

/// The outcome of matching (summable over ledgers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Acknowledged sends.
    pub acked: u64,
    /// Receptions (including duplicates).
    pub received: u64,
    /// Acknowledged and received with the right client_msg_id.
    pub matched: u64,
    /// Acknowledged but never received (or received with another message's id).
    pub lost: u64,
    /// Receptions beyond the first of a seq.
    pub duplicates: u64,
    /// First receptions with a seq lower than one already received.
    pub out_of_order: u64,
    /// A seq whose acknowledgement and reception carried different client_msg_ids.
    pub mismatched: u64,
    /// Distinct seqs received whose send was never acknowledged (e.g. still in flight at the end).
    pub unacked_received: u64,
}

impl std::ops::AddAssign for Verdict {
    fn add_assign(&mut self, o: Verdict) {
        self.acked += o.acked;
        self.received += o.received;
        self.matched += o.matched;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.mismatched += o.mismatched;
        self.unacked_received += o.unacked_received;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_history_passes() {
        let mut l = Ledger::default();
        for s in [1, 3, 4] {
            l.acked(s, s * 10);
        }
        // Arrival order can differ from ack order; seq order is what counts.
        for s in [1, 3, 4] {
            l.received(s, s * 10);
        }
        let v = l.check();
        assert_eq!(
            (v.matched, v.lost, v.duplicates, v.out_of_order),
            (3, 0, 0, 0)
        );
    }

    #[test]
    fn loss_duplicates_reordering_and_mismatches_are_counted() {
        let mut l = Ledger::default();
        for s in 1..=5 {
            l.acked(s, s * 10);
        }
        l.received(1, 10);
        l.received(3, 30);
        l.received(2, 20); // out of order
        l.received(3, 30); // duplicate
        l.received(5, 99); // wrong message under seq 5
        l.received(6, 60); // never acknowledged (still in flight)
        let v = l.check();
        assert_eq!(v.lost, 2, "4 missing, 5 mismatched: {v:?}");
        assert_eq!(v.mismatched, 1);
        assert_eq!(v.duplicates, 1);
        assert_eq!(v.out_of_order, 1);
        assert_eq!(v.matched, 3);
        assert_eq!(v.unacked_received, 1);
        assert_eq!(l.outstanding(), 0);
    }
}
