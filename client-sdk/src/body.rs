//! The message bodies the typed send methods build, and the checks a body passes before it
//! enters the outbox: a body the server is bound to refuse (a server-only kind, a field over its
//! protocol limit, an empty edit, target seq 0) fails at once with [`Error::Rejected`] instead of
//! being sent (and, for a frame over the size limit, retried forever).

use tern_protocol::{ErrorBody, ErrorCode, MessageBody, RichText, Seq};

use crate::error::Error;

/// A reply to `to_seq` without mentions.
pub(crate) fn reply(to_seq: Seq, text: String) -> MessageBody {
    MessageBody::Rich(RichText {
        text,
        reply_to: Some(to_seq),
        mentions: Vec::new(),
    })
}

/// Checks `body` against the rules the server applies whatever the chat: `Ok` does not mean the
/// server will accept it (membership, windows and permissions are the server's to judge).
pub(crate) fn check(body: &MessageBody) -> Result<(), Error> {
    let invalid = |message: &str| Err(rejected(ErrorCode::InvalidArgument, message));
    match body {
        MessageBody::Deleted | MessageBody::System(_) => {
            return invalid("Deleted and System bodies are written by the server only");
        }
        MessageBody::Edit { text, .. } if text.is_empty() => {
            return invalid("an edit needs a text");
        }
        MessageBody::Rich(RichText {
            reply_to: Some(0), ..
        }) => return invalid("no such message (seqs start at 1)"),
        _ => {}
    }
    if body.target() == Some(0) {
        return invalid("no such message (seqs start at 1)");
    }
    if !body.within_limits() {
        return Err(rejected(
            ErrorCode::TooLarge,
            "a field of the message exceeds its protocol limit",
        ));
    }
    Ok(())
}

fn rejected(code: ErrorCode, message: &str) -> Error {
    Error::Rejected(ErrorBody::new(code, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_protocol::limits::{MAX_MENTIONS, MAX_REACTION_LEN, MAX_TEXT_LEN};
    use tern_protocol::{GroupChange, SystemEvent, UserId};

    fn code(body: &MessageBody) -> Option<ErrorCode> {
        check(body).err().and_then(|e| e.code())
    }

    #[test]
    fn what_a_client_may_write_passes() {
        let ok = [
            MessageBody::Text("hi".into()),
            reply(3, "yes".into()),
            MessageBody::Reaction {
                target: 1,
                emoji: Some("👍".into()),
            },
            MessageBody::Reaction {
                target: 1,
                emoji: None,
            },
            MessageBody::Edit {
                target: 2,
                text: "fixed".into(),
            },
            MessageBody::Delete { target: 2 },
        ];
        for body in &ok {
            assert_eq!(check(body), Ok(()), "{body:?}");
        }
        assert_eq!(
            reply(3, "yes".into()),
            MessageBody::Rich(RichText {
                text: "yes".into(),
                reply_to: Some(3),
                mentions: vec![],
            })
        );
    }

    #[test]
    fn server_only_kinds_empty_edits_and_seq_zero_are_invalid() {
        let system = MessageBody::System(SystemEvent {
            actor: UserId(1),
            change: GroupChange::Left,
        });
        let invalid = [
            MessageBody::Deleted,
            system,
            MessageBody::Edit {
                target: 2,
                text: String::new(),
            },
            MessageBody::Delete { target: 0 },
            MessageBody::Reaction {
                target: 0,
                emoji: Some("x".into()),
            },
            reply(0, "to nothing".into()),
        ];
        for body in &invalid {
            assert_eq!(code(body), Some(ErrorCode::InvalidArgument), "{body:?}");
        }
    }

    #[test]
    fn fields_over_their_limit_are_too_large() {
        let long = "x".repeat(MAX_TEXT_LEN + 1);
        let too_large = [
            MessageBody::Text(long.clone()),
            MessageBody::Edit {
                target: 1,
                text: long,
            },
            MessageBody::Reaction {
                target: 1,
                emoji: Some("x".repeat(MAX_REACTION_LEN + 1)),
            },
            MessageBody::Rich(RichText {
                text: "hi".into(),
                reply_to: None,
                mentions: vec![UserId(1); MAX_MENTIONS + 1],
            }),
        ];
        for body in &too_large {
            assert_eq!(code(body), Some(ErrorCode::TooLarge), "{body:?}");
        }
        assert_eq!(check(&MessageBody::Text("x".repeat(MAX_TEXT_LEN))), Ok(()));
    }
}
