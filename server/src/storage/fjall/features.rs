//! Message features inside the writer: who may see which seqs (membership intervals), and the
//! checks and effects of replies, reactions, edits and deletes.
//!
//! Checks run in the writer thread, against the state the write applies to: two deletes of one
//! message cannot both pass, and an edit cannot slip in after a delete.

use tern_protocol::{ChatId, Message, MessageBody, Seq, UserId};

use super::tables::{Counter, Rows, Table, decode, encode, key_tail, key2, key3};
use super::writer::Txn;
use crate::storage::rules;
use crate::storage::{ChatRecord, MAX_PAST_INTERVALS, NewMessage, StorageError, StorageResult};

/// Most edit rows read for one message (far above any `max_edits` a server announces).
const MAX_SCANNED_EDITS: usize = 1024;

pub(crate) use crate::storage::rules::{Intervals, covers};

/// The seq ranges `user` may read: their closed past intervals and, while a member, the open
/// current one. Direct chats: everything.
pub(crate) fn visible(
    rows: &dyn Rows,
    record: &ChatRecord,
    user: UserId,
) -> StorageResult<Intervals> {
    let mut out: Intervals = match rows.get(Table::Intervals, &key2(record.chat_id.0, user.0))? {
        Some(bytes) => decode("intervals", &bytes)?,
        None => Vec::new(),
    };
    if let Some(since) = record.since_seq(user) {
        out.push((since, Seq::MAX));
    }
    Ok(out)
}

/// Closes `user`'s current interval at `to` (they were removed or left).
pub(crate) fn end_interval(
    txn: &mut Txn<'_>,
    chat: ChatId,
    user: UserId,
    since: Seq,
    to: Seq,
) -> StorageResult<()> {
    let key = key2(chat.0, user.0);
    let mut past: Intervals = match txn.get(Table::Intervals, &key)? {
        Some(bytes) => decode("intervals", &bytes)?,
        None => Vec::new(),
    };
    past.push((since, to));
    let excess = past.len().saturating_sub(MAX_PAST_INTERVALS);
    past.drain(..excess);
    txn.put(Table::Intervals, &key, encode(&past)?);
    Ok(())
}

/// Checks a new message against the chat and its target before anything is written: reads
/// what [`rules::check`] needs (only when the message points at another one) in the writer
/// transaction, where it cannot change underneath the check.
pub(crate) fn check(txn: &Txn<'_>, record: &ChatRecord, new: &NewMessage) -> StorageResult<()> {
    let chat = new.chat_id;
    let Some(seq) = rules::target_of(&new.body) else {
        return rules::check(record, new, &Intervals::new(), None, 0);
    };
    let intervals = visible(txn, record, new.sender)?;
    let target = match txn.get(Table::Messages, &key2(chat.0, seq))? {
        Some(bytes) if seq != 0 && covers(&intervals, seq) => Some(decode("messages", &bytes)?),
        _ => None,
    };
    let edits = match (&new.body, &target) {
        (MessageBody::Edit { .. }, Some(_)) => edits_of(txn, chat, seq)?.len(),
        _ => 0,
    };
    rules::check(record, new, &intervals, target.as_ref(), edits)
}

/// Seqs of the edits of `target`.
fn edits_of(txn: &Txn<'_>, chat: ChatId, target: Seq) -> StorageResult<Vec<Seq>> {
    let rows = txn.scan(
        Table::Edits,
        &key3(chat.0, target, 0),
        &key3(chat.0, target, Seq::MAX),
        MAX_SCANNED_EDITS,
    )?;
    rows.iter().map(|(k, _)| key_tail(k)).collect()
}

fn rewrite(
    txn: &mut Txn<'_>,
    chat: ChatId,
    seq: Seq,
    f: impl FnOnce(&mut MessageBody),
) -> StorageResult<()> {
    let key = key2(chat.0, seq);
    let Some(bytes) = txn.get(Table::Messages, &key)? else {
        return Err(rules::no_such_message());
    };
    let mut m: Message = decode("messages", &bytes)?;
    f(&mut m.body);
    txn.put(Table::Messages, &key, encode(&m)?);
    Ok(())
}

/// What a stored message does to earlier ones: an edit rewrites its target's text, a delete for
/// everyone replaces the target's content (and that of its edits) so it is gone from storage.
///
/// `withheld` is the blocker the message is withheld from (a direct chat). An edit they must
/// not see still rewrites the one stored copy, so the body they saw is kept aside first
/// (`Unedited`, only the first withheld edit of a target writes it) and their reads show it.
/// An edit they do see, or a delete for everyone, drops that row: the stored body is what they
/// may see again.
pub(crate) fn apply(
    txn: &mut Txn<'_>,
    record: &ChatRecord,
    message: &Message,
    withheld: Option<UserId>,
) -> StorageResult<()> {
    let chat = message.chat_id;
    match &message.body {
        MessageBody::Edit { target, text } => {
            match withheld {
                Some(blocker) => keep_unedited(txn, blocker, chat, *target)?,
                None => drop_unedited(txn, record, message.sender, *target)?,
            }
            let text = text.clone();
            rewrite(txn, chat, *target, |body| match body {
                MessageBody::Text(t) => *t = text,
                MessageBody::Rich(r) => r.text = text,
                MessageBody::Media(m) => m.caption = Some(text),
                _ => {}
            })?;
            txn.put(
                Table::Edits,
                &key3(chat.0, *target, message.seq),
                Vec::new(),
            );
        }
        MessageBody::Delete { target } => {
            drop_unedited(txn, record, message.sender, *target)?;
            rewrite(txn, chat, *target, |body| *body = MessageBody::Deleted)?;
            for edit in edits_of(txn, chat, *target)? {
                rewrite(txn, chat, edit, |body| {
                    if let MessageBody::Edit { text, .. } = body {
                        text.clear();
                    }
                })?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Saves the body of `target` as `blocker` last saw it, before a withheld edit rewrites it;
/// nothing if an earlier withheld edit saved it already, or if the target itself is withheld
/// from them (they never see it).
fn keep_unedited(
    txn: &mut Txn<'_>,
    blocker: UserId,
    chat: ChatId,
    target: Seq,
) -> StorageResult<()> {
    let key = key3(blocker.0, chat.0, target);
    if txn.get(Table::Unedited, &key)?.is_some() || txn.get(Table::Withheld, &key)?.is_some() {
        return Ok(());
    }
    let Some(bytes) = txn.get(Table::Messages, &key2(chat.0, target))? else {
        return Err(rules::no_such_message());
    };
    let m: Message = decode("messages", &bytes)?;
    txn.put(Table::Unedited, &key, encode(&m.body)?);
    Ok(())
}

/// Drops the saved bodies of `target` of the other members of a direct chat (groups have
/// none), so they see the stored one again.
fn drop_unedited(
    txn: &mut Txn<'_>,
    record: &ChatRecord,
    sender: UserId,
    target: Seq,
) -> StorageResult<()> {
    if record.group.is_some() {
        return Ok(());
    }
    for &m in record.members.iter().filter(|&&m| m != sender) {
        let key = key3(m.0, record.chat_id.0, target);
        if txn.get(Table::Unedited, &key)?.is_some() {
            txn.remove(Table::Unedited, &key);
        }
    }
    Ok(())
}

/// Marks messages hidden for `user` (delete for me), after checking they are theirs to see.
pub(crate) fn hide(
    txn: &mut Txn<'_>,
    record: &ChatRecord,
    user: UserId,
    seqs: &[Seq],
) -> StorageResult<()> {
    let intervals = visible(txn, record, user)?;
    let last = txn.counter(Counter::ChatSeq(record.chat_id))?;
    if seqs.is_empty() {
        return Err(StorageError::Invalid("no messages named".into()));
    }
    for &seq in seqs {
        if seq == 0 || seq > last || !covers(&intervals, seq) {
            return Err(rules::no_such_message());
        }
        txn.put(
            Table::Hidden,
            &key3(user.0, record.chat_id.0, seq),
            Vec::new(),
        );
    }
    Ok(())
}
