//! The history checker: compares what senders were told (`Sent`) with what each device received.
//!
//! Checks, per device and chat: every acknowledged message arrived (I1), exactly once (I2/I3), in
//! seq order with no gaps among what arrived; and that every device of a chat saw the same order.

use std::collections::{BTreeMap, HashMap, HashSet};

use tern_sdk::protocol::{ChatId, Message, MessageBody, Sent};

/// One acknowledged send.
#[derive(Debug, Clone)]
pub struct Acked {
    /// What the server answered.
    pub sent: Sent,
    /// What was sent.
    pub body: MessageBody,
}

/// Violations found, as readable lines (empty when the history is correct).
pub fn check(acked: &[Acked], devices: &[(String, Vec<Message>)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_chat: HashMap<ChatId, BTreeMap<u64, &Acked>> = HashMap::new();
    for a in acked {
        if by_chat
            .entry(a.sent.chat_id)
            .or_default()
            .insert(a.sent.seq, a)
            .is_some()
        {
            problems.push(format!(
                "two acknowledged sends share chat {} seq {}",
                a.sent.chat_id, a.sent.seq
            ));
        }
    }
    let mut orders: HashMap<ChatId, Vec<(String, Vec<u64>)>> = HashMap::new();
    for (name, got) in devices {
        let mut seen: HashSet<(ChatId, u64)> = HashSet::new();
        let mut last: HashMap<ChatId, u64> = HashMap::new();
        for m in got {
            if !seen.insert((m.chat_id, m.seq)) {
                problems.push(format!(
                    "{name}: duplicate chat {} seq {}",
                    m.chat_id, m.seq
                ));
            }
            let prev = last.insert(m.chat_id, m.seq).unwrap_or(0);
            if m.seq <= prev {
                problems.push(format!(
                    "{name}: chat {} seq {} after {}",
                    m.chat_id, m.seq, prev
                ));
            }
            if let Some(a) = by_chat.get(&m.chat_id).and_then(|c| c.get(&m.seq))
                && (a.body != m.body || a.sent.msg_id != m.msg_id)
            {
                problems.push(format!(
                    "{name}: chat {} seq {} differs from what was sent",
                    m.chat_id, m.seq
                ));
            }
        }
        for (chat, sends) in &by_chat {
            for seq in sends.keys() {
                if !seen.contains(&(*chat, *seq)) {
                    problems.push(format!(
                        "{name}: missing acknowledged chat {chat} seq {seq}"
                    ));
                }
            }
            let order: Vec<u64> = got
                .iter()
                .filter(|m| m.chat_id == *chat)
                .map(|m| m.seq)
                .collect();
            orders.entry(*chat).or_default().push((name.clone(), order));
        }
    }
    for (chat, list) in orders {
        if let Some((first_name, first)) = list.first() {
            for (name, order) in &list[1..] {
                if order != first {
                    problems.push(format!(
                        "chat {chat}: {name} saw a different order than {first_name}"
                    ));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_sdk::protocol::{DeviceId, MessageId, UserId};

    fn m(seq: u64) -> Message {
        Message {
            chat_id: ChatId(1),
            seq,
            msg_id: MessageId(seq),
            sender: UserId(1),
            sender_device: DeviceId(1),
            client_msg_id: seq,
            ts_ms: 0,
            body: MessageBody::Text(seq.to_string()),
        }
    }

    fn a(seq: u64) -> Acked {
        Acked {
            sent: Sent {
                chat_id: ChatId(1),
                seq,
                msg_id: MessageId(seq),
                ts_ms: 0,
            },
            body: MessageBody::Text(seq.to_string()),
        }
    }

    #[test]
    fn the_checker_catches_loss_duplicates_and_reordering() {
        let acked = vec![a(1), a(2), a(3)];
        assert!(check(&acked, &[("ok".into(), vec![m(1), m(2), m(3)])]).is_empty());
        assert!(!check(&acked, &[("lost".into(), vec![m(1), m(3)])]).is_empty());
        assert!(!check(&acked, &[("dup".into(), vec![m(1), m(2), m(2), m(3)])]).is_empty());
        assert!(!check(&acked, &[("reordered".into(), vec![m(2), m(1), m(3)])]).is_empty());
    }
}
