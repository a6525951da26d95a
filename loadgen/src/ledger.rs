//! Delivery accounting: every acknowledged message is matched against what its recipient
//! actually received, by (chat, seq) and client_msg_id. Nothing is assumed.
//!
//! One [`Ledger`] per sender: in a direct chat the recipient of a sender's messages is fixed, so
//! the ledger records the sender's acknowledged `(seq, client_msg_id)` pairs and, in arrival
//! order, the `(seq, client_msg_id)` pairs its recipient received from it. In a group every
//! member receives every message of the chat: [`Acked`] holds the group's acknowledged
//! messages once and checks each member's receptions against it.

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
        Acked::new(&self.acked).check(&self.received)
    }
}

/// Acknowledged messages by seq, to match one or more recipients' receptions against (in a
/// group, every member receives every message of the chat).
#[derive(Debug, Default)]
pub struct Acked {
    by_seq: HashMap<Seq, ClientMsgId>,
    /// Sends acknowledged with a seq another send already had (each one is lost).
    clashes: u64,
}

impl Acked {
    /// The acknowledged `(seq, client_msg_id)` pairs (in any order).
    pub fn new(acked: &[(Seq, ClientMsgId)]) -> Acked {
        let mut a = Acked {
            by_seq: HashMap::with_capacity(acked.len()),
            clashes: 0,
        };
        for &(seq, cmid) in acked {
            let first = *a.by_seq.entry(seq).or_insert(cmid);
            if first != cmid {
                // Two different sends acknowledged with the same seq: one of them is lost.
                a.clashes += 1;
            }
        }
        a
    }

    /// How many messages were acknowledged.
    pub fn len(&self) -> usize {
        self.by_seq.len() + self.clashes as usize
    }

    /// Matches every acknowledged message against one recipient's receptions (in arrival
    /// order).
    pub fn check(&self, received: &[(Seq, ClientMsgId)]) -> Verdict {
        let mut v = Verdict {
            acked: self.len() as u64,
            received: received.len() as u64,
            mismatched: self.clashes,
            lost: self.clashes,
            ..Verdict::default()
        };
        // seq -> (times received, client_msg_id of the first reception)
        let mut got: HashMap<Seq, (u64, ClientMsgId)> = HashMap::with_capacity(received.len());
        let mut highest: Option<Seq> = None;
        for &(seq, cmid) in received {
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
        for (seq, cmid) in &self.by_seq {
            match got.get(seq) {
                None => v.lost += 1,
                Some((_, got_cmid)) if got_cmid != cmid => {
                    v.mismatched += 1;
                    v.lost += 1;
                }
                Some(_) => v.matched += 1,
            }
        }
        v.unacked_received = got.keys().filter(|s| !self.by_seq.contains_key(s)).count() as u64;
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

impl Verdict {
    /// Nothing lost, duplicated or reordered.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.out_of_order == 0
    }
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

    #[test]
    fn one_acked_set_checks_several_recipients() {
        let acked = Acked::new(&[(1, 10), (2, 20), (3, 30), (3, 31)]);
        assert_eq!(acked.len(), 4);
        let clean = acked.check(&[(1, 10), (2, 20), (3, 30)]);
        // The clash at seq 3 is one lost message whoever receives.
        assert_eq!((clean.matched, clean.lost, clean.mismatched), (3, 1, 1));
        let short = acked.check(&[(2, 20), (1, 10), (2, 20)]);
        assert_eq!(
            (
                short.matched,
                short.lost,
                short.duplicates,
                short.out_of_order
            ),
            (2, 2, 1, 1)
        );
        assert!(!short.is_clean());
        assert!(Acked::new(&[(1, 1)]).check(&[(1, 1)]).is_clean());
    }
}
