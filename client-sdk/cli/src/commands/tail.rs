//! `tern tail`: connect with the saved cursor, print every update the SDK emits (first what was
//! missed, then live), and save the cursor after each printed one.
//!
//! Exactly once across runs: the SDK emits each update once, in pts order, only when it is the
//! cursor's next (see `tern_sdk::ClientEvent`). So this command mirrors the SDK's cursor by
//! applying each event it receives to its own copy of the saved `SyncState`, and saves that copy
//! right after the line is printed. `Snapshot::sync` would not do: the SDK applies a whole sync
//! page before this loop has printed its first line. Stopping (`--count`, `--timeout`, Ctrl-C,
//! SIGTERM) happens only between events, so no event is printed without being saved, or saved
//! without being printed; only a SIGKILL between the two can print one event twice.

use tern_sdk::protocol::{SessionInfo, Update, UpdateKind, UserId};
use tern_sdk::{ClientEvent, SyncState};

use super::Ctx;
use crate::args::{EventKind, TailArgs};
use crate::connection::Connection;
use crate::failure::Failure;
use crate::output::Record;

/// `tern tail [--count N] [--timeout DURATION] [--only KIND]`.
pub async fn tail(ctx: &mut Ctx, args: TailArgs) -> Result<(), Failure> {
    let mut stop = Stop::new()?;
    let (mut conn, session) = ctx.connect().await?;
    let result = follow(ctx, &mut conn, session, &args, &mut stop).await;
    ctx.finish(conn).await?;
    result
}

async fn follow(
    ctx: &mut Ctx,
    conn: &mut Connection,
    session: SessionInfo,
    args: &TailArgs,
    stop: &mut Stop,
) -> Result<(), Failure> {
    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut printed: u64 = 0;
    let shown = |kind: EventKind| args.only.is_empty() || args.only.contains(&kind);
    if !args.watch.is_empty() {
        let users = args.watch.iter().copied().map(UserId).collect();
        let snapshot = conn
            .call("watching presence", conn.client.watch_presence(users))
            .await?;
        for p in &snapshot {
            if shown(EventKind::Presence) && args.count.is_none_or(|n| printed < n) {
                ctx.out.print(&Record::presence(p))?;
                printed += 1;
            }
        }
    }
    while args.count.is_none_or(|n| printed < n) {
        let event = tokio::select! {
            event = conn.next_update(&ctx.store, &mut ctx.profile) => event?,
            () = sleep_until(deadline) => return Ok(()),
            () = stop.wait() => return Ok(()),
        };
        let Some(event) = event else {
            return Err(Failure::Local("the SDK client stopped".into()));
        };
        // Presence and typing are not updates: printed as they come, never saved.
        let ephemeral = match &event {
            ClientEvent::Presence(p) => Some((Record::presence(p), EventKind::Presence)),
            ClientEvent::Typing { event, datagram } => Some((
                Record::Typing {
                    chat_id: event.chat_id.0,
                    user_id: event.user_id.0,
                    typing: event.typing,
                    datagram: *datagram,
                },
                EventKind::Typing,
            )),
            _ => None,
        };
        if let Some((record, kind)) = ephemeral {
            if shown(kind) {
                ctx.out.print(&record)?;
                printed += 1;
            }
            continue;
        }
        let Some((update, kind)) = as_update(&ctx.profile.sync, event) else {
            continue;
        };
        let record = record_of(&update, session);
        let mut next = ctx.profile.sync.clone();
        next.cursor.pts = next.cursor.pts.max(update.pts.saturating_sub(1));
        next.apply(&update);
        if shown(kind) {
            ctx.out.print(&record)?;
            printed += 1;
        }
        ctx.profile.sync = next;
        ctx.store.save(&ctx.profile)?;
    }
    Ok(())
}

/// The update an event stands for. Receipts, joins, leaves and hides carry no pts: theirs is the
/// cursor's next, by the SDK's emission rule. A message carries its own, which wins should the two disagree.
fn as_update(sync: &SyncState, event: ClientEvent) -> Option<(Update, EventKind)> {
    let next = sync.cursor.pts + 1;
    let (pts, kind, event_kind) = match event {
        ClientEvent::Message { message, pts, .. } => {
            (pts, UpdateKind::Message(message), EventKind::Message)
        }
        ClientEvent::Receipt(r) => (next, UpdateKind::Receipt(r), EventKind::Receipt),
        ClientEvent::ChatJoined(c) => (next, UpdateKind::ChatJoined(c), EventKind::ChatJoined),
        ClientEvent::ChatLeft { chat_id, at_seq } => (
            next,
            UpdateKind::ChatLeft { chat_id, at_seq },
            EventKind::ChatLeft,
        ),
        ClientEvent::HiddenForMe { chat_id, seqs } => (
            next,
            UpdateKind::HiddenForMe { chat_id, seqs },
            EventKind::HiddenForMe,
        ),
        ClientEvent::ProfileChanged { user_id } => (
            next,
            UpdateKind::ProfileChanged { user_id },
            EventKind::ProfileChanged,
        ),
        _ => return None,
    };
    Some((Update { pts, kind }, event_kind))
}

fn record_of(update: &Update, session: SessionInfo) -> Record {
    match &update.kind {
        UpdateKind::Message(m) => Record::message(m, Some(session.user_id.0), Some(update.pts)),
        UpdateKind::Receipt(r) => Record::receipt(r, Some(update.pts)),
        UpdateKind::ChatJoined(c) => Record::chat_joined(c, update.pts),
        UpdateKind::ChatLeft { chat_id, at_seq } => Record::ChatLeft {
            chat_id: chat_id.0,
            at_seq: *at_seq,
            pts: update.pts,
        },
        UpdateKind::HiddenForMe { chat_id, seqs } => {
            Record::hidden_for_me(*chat_id, seqs, Some(update.pts))
        }
        UpdateKind::ProfileChanged { user_id } => Record::ProfileChanged {
            user_id: user_id.0,
            pts: update.pts,
        },
    }
}

pub(super) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Ctrl-C and SIGTERM, registered before connecting so an early signal is not lost.
pub(super) struct Stop {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Stop {
    pub(super) fn new() -> Result<Stop, Failure> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let register = |kind| {
                signal(kind)
                    .map_err(|e| Failure::Local(format!("installing a signal handler: {e}")))
            };
            Ok(Stop {
                int: register(SignalKind::interrupt())?,
                term: register(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Stop {})
    }

    /// Resolves at the first Ctrl-C or SIGTERM. Cancel-safe.
    pub(super) async fn wait(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

impl std::fmt::Debug for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stop")
    }
}
