//! The pure heart of the SDK: which updates are new, which are duplicates, and when a gap means
//! the client must sync. The per-user update sequence (pts) is dense, so `pts == cursor + 1` is the
//! only update that may be applied; anything later means something was missed.

use std::collections::HashMap;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tern_protocol::{ChatId, Message, Pts, Seq, SyncCursor, Update, UpdateKind};

/// What to do with an incoming update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Next in sequence: apply it and hand it to the app.
    Apply,
    /// Already applied: drop it.
    Duplicate,
    /// Something is missing before it: drop it and sync from the cursor.
    Gap,
}

/// A device's sync position, to persist between runs and pass back to `ClientConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// Every update up to here has been applied.
    pub cursor: SyncCursor,
    /// Highest message seq applied per chat.
    pub chats: HashMap<ChatId, Seq>,
}

impl SyncState {
    /// Classifies an update without changing state.
    pub fn verdict(&self, update: &Update) -> Verdict {
        if update.pts <= self.cursor.pts {
            Verdict::Duplicate
        } else if update.pts == self.cursor.pts + 1 {
            Verdict::Apply
        } else {
            Verdict::Gap
        }
    }

    /// Applies an update if it is next; returns the verdict.
    pub fn apply(&mut self, update: &Update) -> Verdict {
        let v = self.verdict(update);
        if v == Verdict::Apply {
            self.cursor.pts = update.pts;
            if let UpdateKind::Message(m) = &update.kind {
                let last = self.chats.entry(m.chat_id).or_insert(0);
                *last = (*last).max(m.seq);
            }
        }
        v
    }
}

impl SyncState {
    /// Forgets everything: the next sync starts at `pts = 0`. Used when the server's log is
    /// behind this state (restored from an older backup), where keeping the cursor would make
    /// every new update look like a duplicate.
    pub fn reset(&mut self) {
        *self = SyncState::default();
    }

    /// Moves the cursor past a hole in the log (updates `cursor + 1 ..= to` will never come).
    pub fn skip_to(&mut self, to: Pts) {
        self.cursor.pts = self.cursor.pts.max(to);
    }
}

/// How many times a sync page that does not advance the cursor is asked for again before the
/// client gives up on the missing updates and moves past them.
pub const MAX_HOLE_RETRIES: u32 = 3;

/// What to do after a sync page has been applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStep {
    /// The page moved the cursor (or the log is exhausted): carry on.
    Progress,
    /// The page did not move the cursor: ask for the same page again.
    Retry,
    /// Retries are used up: the updates after the cursor up to `to` are missing; skip them,
    /// tell the app, and apply the page again.
    SkipHole {
        /// Last missing pts.
        to: Pts,
    },
    /// Retries are used up and there is nothing to skip to (the server keeps answering with
    /// updates the client already has): stop syncing until the next connection.
    GiveUp,
}

/// Counts sync pages in a row that did not advance the cursor, so a hole in the log (a missing
/// pts) is retried a bounded number of times instead of being fetched forever.
#[derive(Debug, Clone, Default)]
pub struct HoleGuard {
    stalls: u32,
}

impl HoleGuard {
    /// Judges a page asked for at cursor `before`, after its updates went through
    /// [`SyncState::apply`]: `first` is the page's first update's pts, `page_cursor` its cursor,
    /// `has_more` its flag.
    pub fn after_page(
        &mut self,
        before: Pts,
        state: &SyncState,
        first: Option<Pts>,
        page_cursor: Pts,
        has_more: bool,
    ) -> PageStep {
        let stalled = state.cursor.pts == before && (first.is_some() || has_more);
        if !stalled {
            self.stalls = 0;
            return PageStep::Progress;
        }
        self.stalls += 1;
        if self.stalls <= MAX_HOLE_RETRIES {
            return PageStep::Retry;
        }
        self.stalls = 0;
        match first {
            Some(p) if p > before + 1 => PageStep::SkipHole { to: p - 1 },
            _ if page_cursor > before => PageStep::SkipHole { to: page_cursor },
            _ => PageStep::GiveUp,
        }
    }
}

/// The delivery acks a batch of updates calls for: per chat, the highest seq of a message from
/// someone else (every body kind alike: text, system, reaction, edit, delete). A user's own
/// messages are never acked (the server counts the sender as having them), and a chat the user
/// just left is not acked at all: the server answers a removed member's ack with `NotFound`.
#[derive(Debug, Clone, Default)]
pub(crate) struct AckBatch {
    upto: HashMap<ChatId, Seq>,
}

impl AckBatch {
    /// Notes an applied message; `own` when this user sent it.
    pub(crate) fn on_message(&mut self, message: &Message, own: bool) {
        if !own {
            let e = self.upto.entry(message.chat_id).or_insert(0);
            *e = (*e).max(message.seq);
        }
    }

    /// The user's membership of `chat_id` ended.
    pub(crate) fn on_left(&mut self, chat_id: ChatId) {
        self.upto.remove(&chat_id);
    }

    /// Whether no ack is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.upto.is_empty()
    }

    /// The acks to send now, emptying the batch.
    pub(crate) fn take(&mut self) -> HashMap<ChatId, Seq> {
        std::mem::take(&mut self.upto)
    }
}

/// How long a send refused with a retryable code waits before it is tried again: 250 ms
/// doubling per refusal in a row up to 30 s, with ×[0.5, 1.5) jitter, so a rate-limited outbox
/// backs off instead of hammering the server every tick.
pub fn refusal_backoff(refusals: u32, jitter: f64) -> Duration {
    let base = Duration::from_millis(250).saturating_mul(1u32 << refusals.min(7));
    base.min(Duration::from_secs(30))
        .mul_f64(0.5 + jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_protocol::{ChatInfo, ChatKind, DeviceId, Message, MessageBody, MessageId, UserId};

    fn msg(pts: u64, seq: u64) -> Update {
        Update {
            pts,
            kind: UpdateKind::Message(Message {
                chat_id: ChatId(1),
                seq,
                msg_id: MessageId(seq),
                sender: UserId(1),
                sender_device: DeviceId(1),
                client_msg_id: seq,
                ts_ms: 0,
                body: MessageBody::Text("x".into()),
            }),
        }
    }

    #[test]
    fn in_order_duplicate_and_gap() {
        let mut s = SyncState::default();
        let joined = Update {
            pts: 1,
            kind: UpdateKind::ChatJoined(ChatInfo {
                chat_id: ChatId(1),
                kind: ChatKind::Direct,
                members: vec![],
                last_seq: 0,
            }),
        };
        assert_eq!(s.apply(&joined), Verdict::Apply);
        assert_eq!(s.apply(&msg(2, 1)), Verdict::Apply);
        assert_eq!(s.apply(&msg(2, 1)), Verdict::Duplicate);
        assert_eq!(s.apply(&msg(4, 3)), Verdict::Gap);
        assert_eq!(s.cursor.pts, 2, "a gap does not move the cursor");
        assert_eq!(s.apply(&msg(3, 2)), Verdict::Apply);
        assert_eq!(s.apply(&msg(4, 3)), Verdict::Apply);
        assert_eq!(s.chats.get(&ChatId(1)), Some(&3));
    }

    /// A scripted server whose log lacks pts 3: the page after cursor 2 always starts at 4.
    fn page_after(cursor: u64) -> Vec<Update> {
        (cursor + 1..=6)
            .filter(|&p| p != 3)
            .map(|p| msg(p, p))
            .collect()
    }

    #[test]
    fn a_hole_is_retried_a_bounded_number_of_times_then_skipped() {
        let mut s = SyncState::default();
        let mut guard = HoleGuard::default();
        let mut requests = 0;
        let mut skipped = None;
        while s.cursor.pts < 6 {
            requests += 1;
            assert!(requests < 20, "the client loops on the hole");
            let before = s.cursor.pts;
            let page = page_after(before);
            for u in &page {
                s.apply(u);
            }
            match guard.after_page(before, &s, page.first().map(|u| u.pts), 6, false) {
                PageStep::Progress | PageStep::Retry => {}
                PageStep::SkipHole { to } => {
                    skipped = Some((before, to));
                    s.skip_to(to);
                    for u in &page {
                        s.apply(u);
                    }
                }
                PageStep::GiveUp => panic!("there was something to skip to"),
            }
        }
        assert_eq!(skipped, Some((2, 3)), "only pts 3 is reported missing");
        assert_eq!(requests, 2 + MAX_HOLE_RETRIES as usize);
    }

    #[test]
    fn a_page_of_duplicates_gives_up_instead_of_looping() {
        let mut s = SyncState::default();
        s.cursor.pts = 5;
        let mut guard = HoleGuard::default();
        let mut steps = Vec::new();
        for _ in 0..=MAX_HOLE_RETRIES {
            // A broken server answers with an old update and `has_more`.
            let page = [msg(5, 5)];
            s.apply(&page[0]);
            steps.push(guard.after_page(5, &s, Some(5), 5, true));
        }
        assert_eq!(steps.last(), Some(&PageStep::GiveUp));
        assert!(
            steps[..steps.len() - 1]
                .iter()
                .all(|s| *s == PageStep::Retry)
        );
    }

    fn in_chat(chat: u64, seq: u64, sender: u64, body: MessageBody) -> Message {
        Message {
            chat_id: ChatId(chat),
            seq,
            msg_id: MessageId(seq),
            sender: UserId(sender),
            sender_device: DeviceId(1),
            client_msg_id: seq,
            ts_ms: 0,
            body,
        }
    }

    #[test]
    fn every_kind_from_others_is_acked_own_messages_and_left_chats_are_not() {
        use tern_protocol::{GroupChange, SystemEvent};
        let me = 1;
        let mut acks = AckBatch::default();
        let system = MessageBody::System(SystemEvent {
            actor: UserId(2),
            change: GroupChange::MembersAdded(vec![UserId(me)]),
        });
        let bodies = [
            (1, 2, system),
            (2, 2, MessageBody::Text("hi".into())),
            (
                3,
                3,
                MessageBody::Reaction {
                    target: 2,
                    emoji: Some("👍".into()),
                },
            ),
            (
                4,
                2,
                MessageBody::Edit {
                    target: 2,
                    text: "hey".into(),
                },
            ),
            (5, 2, MessageBody::Delete { target: 2 }),
            (6, me, MessageBody::Text("mine".into())),
        ];
        let mut state = SyncState::default();
        for (i, (seq, sender, body)) in bodies.into_iter().enumerate() {
            let m = in_chat(7, seq, sender, body);
            let update = Update {
                pts: i as u64 + 1,
                kind: UpdateKind::Message(m.clone()),
            };
            assert_eq!(state.apply(&update), Verdict::Apply);
            acks.on_message(&m, sender == me);
        }
        assert_eq!(
            state.chats.get(&ChatId(7)),
            Some(&6),
            "every kind moves the chat's seq"
        );
        // Another chat: only own messages, nothing to ack; a left one: dropped.
        acks.on_message(&in_chat(8, 1, me, MessageBody::Text("x".into())), true);
        acks.on_message(&in_chat(9, 4, 2, MessageBody::Text("x".into())), false);
        acks.on_left(ChatId(9));
        let taken = acks.take();
        assert_eq!(
            taken,
            HashMap::from([(ChatId(7), 5)]),
            "up to the last from others"
        );
        assert!(acks.take().is_empty(), "taken once");
        // Leaving and hiding move the cursor like any update.
        for (pts, kind) in [
            (
                7,
                UpdateKind::HiddenForMe {
                    chat_id: ChatId(7),
                    seqs: vec![2],
                },
            ),
            (
                8,
                UpdateKind::ChatLeft {
                    chat_id: ChatId(7),
                    at_seq: 6,
                },
            ),
        ] {
            assert_eq!(state.apply(&Update { pts, kind }), Verdict::Apply);
        }
        assert_eq!(state.cursor.pts, 8);
    }

    #[test]
    fn reset_forgets_the_cursor_and_chats() {
        let mut s = SyncState::default();
        s.apply(&msg(1, 1));
        s.reset();
        assert_eq!(s, SyncState::default());
        assert_eq!(s.apply(&msg(1, 1)), Verdict::Apply, "replayed from scratch");
    }

    #[test]
    fn refused_sends_back_off_and_the_wait_is_capped() {
        let waits: Vec<_> = (0..12).map(|n| refusal_backoff(n, 0.5)).collect();
        assert_eq!(waits[0], Duration::from_millis(250));
        assert!(
            waits.windows(2).all(|w| w[1] >= w[0]),
            "never shorter: {waits:?}"
        );
        assert_eq!(waits[11], Duration::from_secs(30), "capped");
        assert!(
            refusal_backoff(3, 0.0) < refusal_backoff(3, 1.0),
            "jittered"
        );
    }
}
