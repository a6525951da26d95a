//! The message-feature verbs: `reply`, `react`, `edit`, `delete`. Each is a message of its own
//! (with its own seq) sent through the SDK's outbox, like `send`; `delete --for-me` is not.

use tern_sdk::protocol::limits::{MAX_DELETE_FOR_ME, MAX_REACTION_LEN};
use tern_sdk::protocol::{ChatId, MessageBody, RichText, UserId};

use super::Ctx;
use super::chat::{check_len, send_body, text_to_send};
use crate::args::{DeleteArgs, EditArgs, ReactArgs, ReplyArgs};
use crate::failure::Failure;
use crate::output::Record;

/// `tern reply CHAT SEQ [TEXT] [--mention USER]...`.
pub async fn reply(ctx: &mut Ctx, args: ReplyArgs) -> Result<(), Failure> {
    let text = text_to_send(args.text)?;
    let body = MessageBody::Rich(RichText {
        text,
        reply_to: Some(args.seq),
        mentions: args.mentions.into_iter().map(UserId).collect(),
    });
    send_body(ctx, args.chat, body, args.id.client_msg_id).await
}

/// `tern react CHAT SEQ EMOJI | --remove`.
pub async fn react(ctx: &mut Ctx, args: ReactArgs) -> Result<(), Failure> {
    let emoji = if args.remove { None } else { args.emoji };
    if let Some(e) = &emoji {
        if e.is_empty() {
            return Err(Failure::Usage(
                "no emoji: give one, or --remove to take the reaction back".into(),
            ));
        }
        check_len("the reaction", e, "one (a single emoji)", MAX_REACTION_LEN)?;
    }
    let body = MessageBody::Reaction {
        target: args.seq,
        emoji,
    };
    send_body(ctx, args.chat, body, args.id.client_msg_id).await
}

/// `tern edit CHAT SEQ [TEXT]`.
pub async fn edit(ctx: &mut Ctx, args: EditArgs) -> Result<(), Failure> {
    let text = text_to_send(args.text)?;
    let body = MessageBody::Edit {
        target: args.seq,
        text,
    };
    send_body(ctx, args.chat, body, args.id.client_msg_id).await
}

/// `tern delete CHAT SEQ... [--for-me]`.
pub async fn delete(ctx: &mut Ctx, args: DeleteArgs) -> Result<(), Failure> {
    if args.for_me {
        return delete_for_me(ctx, args).await;
    }
    if args.client_msg_id.is_some() && args.seqs.len() > 1 {
        return Err(Failure::Usage(
            "--client-msg-id names one message: delete one seq at a time with it".into(),
        ));
    }
    let [target] = args.seqs[..] else {
        // Several: one delete message each, stopping at the first refusal.
        let (conn, _) = ctx.connect().await?;
        let mut result = Ok(());
        for &target in &args.seqs {
            let sent = conn
                .call(
                    "deleting (it may or may not have been stored: check with `tern history`)",
                    conn.client.delete_for_everyone(ChatId(args.chat), target),
                )
                .await;
            match sent {
                Ok(sent) => ctx.out.print(&Record::sent(&sent))?,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        ctx.finish(conn).await?;
        return result;
    };
    let body = MessageBody::Delete { target };
    send_body(ctx, args.chat, body, args.client_msg_id).await
}

async fn delete_for_me(ctx: &mut Ctx, args: DeleteArgs) -> Result<(), Failure> {
    if args.seqs.len() > MAX_DELETE_FOR_ME {
        return Err(Failure::Usage(format!(
            "{} seqs; one delete --for-me takes at most {MAX_DELETE_FOR_ME}",
            args.seqs.len()
        )));
    }
    let chat = ChatId(args.chat);
    let (conn, _) = ctx.connect().await?;
    let result = conn
        .call(
            "deleting for me",
            conn.client.delete_for_me(chat, args.seqs.clone()),
        )
        .await;
    ctx.finish(conn).await?;
    result?;
    ctx.out
        .print(&Record::hidden_for_me(chat, &args.seqs, None))
}
