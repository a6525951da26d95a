//! The pure heart of the SDK: which updates are new, which are duplicates, and when a gap means
//! the client must sync. The per-user update sequence (pts) is dense, so `pts == cursor + 1` is the
//! only update that may be applied; anything later means something was missed.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tern_protocol::{ChatId, Seq, SyncCursor, Update, UpdateKind};

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
}
