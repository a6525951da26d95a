//! The chat verbs: `chats`, `open`, `send`, `history`, `read`, `receipts`.
//! (Replies, reactions, edits and deletes are in `message`, groups in `group`.)

use std::io::Read;

use tern_sdk::protocol::limits::{MAX_MESSAGES_PAGE, MAX_TEXT_LEN};
use tern_sdk::protocol::{ChatId, MessageBody, UserId};

use super::Ctx;
use crate::args::{HistoryArgs, SendArgs};
use crate::failure::Failure;
use crate::output::Record;

/// `tern chats`.
pub async fn chats(ctx: &mut Ctx) -> Result<(), Failure> {
    let (conn, _) = ctx.connect().await?;
    let result = conn.call("listing chats", conn.client.chats()).await;
    ctx.finish(conn).await?;
    let chats = result?;
    if chats.is_empty() {
        ctx.out.note("no chats yet: open one with `tern open USER`");
    }
    for c in &chats {
        ctx.out.print(&Record::chat(c))?;
    }
    Ok(())
}

/// `tern open USER`.
pub async fn open(ctx: &mut Ctx, user: u64) -> Result<(), Failure> {
    let (conn, _) = ctx.connect().await?;
    let result = conn
        .call(
            "opening the chat",
            conn.client.open_direct_chat(UserId(user)),
        )
        .await;
    ctx.finish(conn).await?;
    ctx.out.print(&Record::chat(&result?))
}

/// The text to send: the argument, or all of stdin (one trailing newline dropped, as `echo`
/// adds one).
pub(super) fn text_to_send(arg: Option<String>) -> Result<String, Failure> {
    let text = match arg {
        Some(t) if t != "-" => t,
        _ => {
            let mut buf = String::new();
            std::io::stdin()
                .read_to_string(&mut buf)
                .map_err(|e| Failure::Usage(format!("reading the text from stdin: {e}")))?;
            let trimmed = buf.strip_suffix('\n').unwrap_or(&buf);
            trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned()
        }
    };
    if text.is_empty() {
        return Err(Failure::Usage(
            "nothing to send: give TEXT or pipe it to stdin".into(),
        ));
    }
    check_len("the text", &text, "a message", MAX_TEXT_LEN)?;
    Ok(text)
}

/// A usage error when `value` (`what`) is longer than `max` bytes, which `holder` holds.
pub(super) fn check_len(what: &str, value: &str, holder: &str, max: usize) -> Result<(), Failure> {
    if value.len() > max {
        return Err(Failure::Usage(format!(
            "{what} has {} bytes; {holder} holds at most {max}",
            value.len()
        )));
    }
    Ok(())
}

/// `tern send CHAT [TEXT]`.
pub async fn send(ctx: &mut Ctx, args: SendArgs) -> Result<(), Failure> {
    // Read the text before connecting: a failing pipe should not cost a connection.
    let text = text_to_send(args.text)?;
    send_body(ctx, args.chat, MessageBody::Text(text), args.client_msg_id).await
}

/// Sends any message body through the SDK's outbox and prints `sent`.
pub(super) async fn send_body(
    ctx: &mut Ctx,
    chat: u64,
    body: MessageBody,
    client_msg_id: Option<u64>,
) -> Result<(), Failure> {
    let (conn, _) = ctx.connect().await?;
    let client_msg_id = client_msg_id.unwrap_or_else(rand::random);
    let result = conn
        .call(
            "sending (it may or may not have been stored; repeat with the same --client-msg-id \
             to be sure it is stored once)",
            conn.client.send(ChatId(chat), body, client_msg_id),
        )
        .await;
    ctx.finish(conn).await?;
    ctx.out.print(&Record::sent(&result?))
}

/// `tern history CHAT [--from SEQ] [--limit N]`.
pub async fn history(ctx: &mut Ctx, args: HistoryArgs) -> Result<(), Failure> {
    let limit = args.limit.clamp(1, MAX_MESSAGES_PAGE);
    let (conn, session) = ctx.connect().await?;
    let chat = ChatId(args.chat);
    let result = async {
        let from = match args.from {
            Some(from) => from,
            None => {
                // The last `limit` messages: find where the chat ends.
                let chats = conn.call("listing chats", conn.client.chats()).await?;
                let last = chats
                    .iter()
                    .find(|c| c.chat_id == chat)
                    .map(|c| c.last_seq)
                    .ok_or_else(|| {
                        Failure::refused(tern_sdk::protocol::ErrorCode::NotFound, "no such chat")
                    })?;
                last.saturating_sub(u64::from(limit) - 1).max(1)
            }
        };
        conn.call("reading history", conn.client.messages(chat, from, limit))
            .await
    }
    .await;
    ctx.finish(conn).await?;
    for m in &result? {
        ctx.out
            .print(&Record::message(m, Some(session.user_id.0), None))?;
    }
    Ok(())
}

/// `tern read CHAT SEQ`.
pub async fn read(ctx: &mut Ctx, chat: u64, seq: u64) -> Result<(), Failure> {
    let (conn, _) = ctx.connect().await?;
    let result = conn
        .call("marking read", conn.client.mark_read(ChatId(chat), seq))
        .await;
    ctx.finish(conn).await?;
    result?;
    ctx.out.print(&Record::Read { chat_id: chat, seq })
}

/// `tern receipts CHAT [SEQ]`.
pub async fn receipts(ctx: &mut Ctx, chat: u64, seq: Option<u64>) -> Result<(), Failure> {
    let (conn, _) = ctx.connect().await?;
    if let Some(seq) = seq {
        let result = conn
            .call(
                "reading the message's receipts",
                conn.client.message_receipts(ChatId(chat), seq),
            )
            .await;
        ctx.finish(conn).await?;
        return ctx.out.print(&Record::message_receipts(&result?));
    }
    let result = conn
        .call("reading receipts", conn.client.receipts(ChatId(chat)))
        .await;
    ctx.finish(conn).await?;
    for r in &result? {
        ctx.out.print(&Record::receipt(r, None))?;
    }
    Ok(())
}
