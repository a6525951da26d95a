//! The checks a message is held to before it is appended, shared by every backend: pure
//! functions over rows the backend read beforehand (the target message, its edits, the
//! sender's intervals). Each backend makes its reads part of the write's serialization: the
//! embedded store reads inside its writer transaction; the CQL store's conditional batch
//! commits only if nothing was appended since its reads, so the check cannot go stale.

use tern_protocol::{Message, MessageBody, RichText, Seq};

use crate::storage::{ChatRecord, NewMessage, StorageError, StorageResult};

/// Inclusive seq ranges, sorted.
pub(crate) type Intervals = Vec<(Seq, Seq)>;

pub(crate) fn covers(intervals: &Intervals, seq: Seq) -> bool {
    intervals.iter().any(|&(a, b)| a <= seq && seq <= b)
}

pub(crate) fn no_such_message() -> StorageError {
    StorageError::Invalid("no such message".into())
}

/// The seq a message points at (reply, reaction, edit, delete), if any.
pub(crate) fn target_of(body: &MessageBody) -> Option<Seq> {
    match body {
        MessageBody::Rich(RichText { reply_to, .. }) => *reply_to,
        MessageBody::Reaction { target, .. }
        | MessageBody::Edit { target, .. }
        | MessageBody::Delete { target } => Some(*target),
        _ => None,
    }
}

/// The target as a content message the sender may point at.
fn content_target<'a>(
    intervals: &Intervals,
    seq: Seq,
    target: Option<&'a Message>,
) -> StorageResult<&'a Message> {
    if seq == 0 || !covers(intervals, seq) {
        return Err(no_such_message());
    }
    let t = target.ok_or_else(no_such_message)?;
    match t.body {
        MessageBody::Deleted => Err(StorageError::Invalid(
            "the message was deleted for everyone".into(),
        )),
        ref b if b.is_content() => Ok(t),
        _ => Err(no_such_message()),
    }
}

fn seconds(ms: u64) -> u64 {
    ms / 1000
}

/// Checks `new` against the chat, the sender's `intervals`, the `target` message (read at
/// [`target_of`]) and the number of `edits` the target has.
pub(crate) fn check(
    record: &ChatRecord,
    new: &NewMessage,
    intervals: &Intervals,
    target: Option<&Message>,
    edits: usize,
) -> StorageResult<()> {
    let admin = record.is_admin(new.sender);
    let announcement = record
        .group
        .as_ref()
        .is_some_and(|g| g.settings.announcement_only);
    let speaks = matches!(
        new.body,
        MessageBody::Text(_)
            | MessageBody::Rich(_)
            | MessageBody::Reaction { .. }
            | MessageBody::Media(_)
    );
    if announcement && speaks && !admin {
        return Err(StorageError::Forbidden(
            "only admins may send in this group".into(),
        ));
    }
    match &new.body {
        MessageBody::Text(t) if t.is_empty() => Err(StorageError::Invalid("empty message".into())),
        MessageBody::Text(_) => Ok(()),
        MessageBody::Rich(RichText {
            text,
            reply_to,
            mentions,
        }) => {
            if text.is_empty() {
                return Err(StorageError::Invalid("empty message".into()));
            }
            if mentions.len() > new.rules.max_mentions as usize {
                return Err(StorageError::Invalid(format!(
                    "a message mentions at most {} members",
                    new.rules.max_mentions
                )));
            }
            if let Some(m) = mentions.iter().find(|m| !record.has_member(**m)) {
                return Err(StorageError::Invalid(format!(
                    "mentioned user {m} is not a member"
                )));
            }
            if let Some(to) = reply_to {
                content_target(intervals, *to, target)?;
            }
            Ok(())
        }
        MessageBody::Reaction { target: seq, emoji } => {
            if emoji.as_ref().is_some_and(String::is_empty) {
                return Err(StorageError::Invalid(
                    "an empty reaction; send None to remove one".into(),
                ));
            }
            content_target(intervals, *seq, target).map(|_| ())
        }
        MessageBody::Edit { target: seq, text } => {
            if text.is_empty() {
                return Err(StorageError::Invalid("an edit needs text".into()));
            }
            let t = content_target(intervals, *seq, target)?;
            if matches!(t.body, MessageBody::Media(_))
                && text.len() > tern_protocol::limits::MAX_CAPTION_LEN
            {
                return Err(StorageError::Invalid(format!(
                    "a caption is at most {} bytes",
                    tern_protocol::limits::MAX_CAPTION_LEN
                )));
            }
            if t.sender != new.sender {
                return Err(StorageError::Forbidden(
                    "only the sender may edit a message".into(),
                ));
            }
            if new.ts_ms.saturating_sub(t.ts_ms) > new.rules.edit_window_ms {
                return Err(StorageError::Forbidden(format!(
                    "the edit window of {} s has passed",
                    seconds(new.rules.edit_window_ms)
                )));
            }
            if edits >= new.rules.max_edits as usize {
                return Err(StorageError::Forbidden(format!(
                    "a message may be edited at most {} times",
                    new.rules.max_edits
                )));
            }
            Ok(())
        }
        MessageBody::Delete { target: seq } => {
            let t = content_target(intervals, *seq, target)?;
            let own = t.sender == new.sender;
            let in_window = new.ts_ms.saturating_sub(t.ts_ms) <= new.rules.delete_window_ms;
            if (own && in_window) || (record.group.is_some() && admin) {
                Ok(())
            } else if !own {
                Err(StorageError::Forbidden(
                    "only the sender or a group admin may delete a message for everyone".into(),
                ))
            } else {
                Err(StorageError::Forbidden(format!(
                    "the delete window of {} s has passed",
                    seconds(new.rules.delete_window_ms)
                )))
            }
        }
        // The media service checked the media and filled in what it knows before this.
        MessageBody::Media(_) => Ok(()),
        MessageBody::Deleted | MessageBody::System(_) => Err(StorageError::Invalid(
            "this message kind is written by the server only".into(),
        )),
    }
}
