//! A link that is up: the loop that takes frames from the server, commands from the app and a
//! tick for deadlines and retries, and how the link ends (what was in flight goes back).
//!
//! The update stream lives here too, because it is what the loop mostly does: the session
//! coming up (sync from the cursor, resend the outbox), live updates applied or found to leave a
//! gap, sync pages with their holes and resets, and acks batched per drain of the inbound queue.

use std::time::{Duration, Instant};

use tern_protocol::{ErrorCode, Event, Frame, Request, SessionInfo, Update, UpdateKind};

use super::{Command, Driver, Inbound, Link, LinkEnd, OutboxEntry, Pending};
use crate::client::ClientEvent;
use crate::error::Error;
use crate::state::{PageStep, Verdict};

impl Driver {
    pub(super) fn on_authenticated(
        &mut self,
        link: &mut Link,
        session: SessionInfo,
        latest_pts: Option<u64>,
    ) {
        link.authenticated = true;
        self.session = Some(session);
        for waiter in self.conn_waiters.drain(..) {
            let _ = waiter.send(link.conn.clone());
        }
        self.emit(ClientEvent::Connected {
            session: Some(session),
        });
        if let Some(head) = latest_pts.filter(|&p| p < self.sync.cursor.pts) {
            self.reset_sync(Some(head));
        }
        if latest_pts.is_none_or(|p| p != self.sync.cursor.pts) {
            link.gap = true;
            self.request_sync(link);
        }
        for (cmid, entry) in self.outbox.iter_mut() {
            entry.in_flight = false;
            let body = Request::SendMessage {
                chat_id: entry.chat_id,
                client_msg_id: *cmid,
                body: entry.body.clone(),
            };
            if link.request(body, Pending::Send(*cmid)) {
                entry.in_flight = true;
            }
        }
        self.restore_social(link);
        self.flush_waiting(link);
        // Acks batched on the last link: the messages they cover will not come again.
        self.flush_acks(link);
    }

    pub(super) fn request_sync(&mut self, link: &mut Link) {
        if !link.syncing {
            link.gap = false;
            let body = Request::Sync {
                after: self.sync.cursor,
                limit: self.cfg.sync_page,
            };
            link.syncing = link.request(body, Pending::Sync);
        }
    }

    pub(super) async fn serve(&mut self, mut link: Link) -> LinkEnd {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            tokio::select! {
                inbound = link.inbound.recv() => match inbound {
                    Some(Inbound::Frame(frame)) => {
                        if let Some(end) = self.on_frame(&mut link, frame) {
                            break end;
                        }
                        // Drain what else has arrived before acknowledging, to batch acks.
                        while let Ok(next) = link.inbound.try_recv() {
                            match next {
                                Inbound::Frame(f) => {
                                    if let Some(end) = self.on_frame(&mut link, f) {
                                        return self.finish(link, end);
                                    }
                                }
                                Inbound::Datagram(d) => self.on_datagram(&d),
                                Inbound::End { code, reason } => return self.finish_end(link, code, reason),
                            }
                        }
                        self.schedule_acks(&mut link);
                    }
                    Some(Inbound::Datagram(d)) => self.on_datagram(&d),
                    Some(Inbound::End { code, reason }) => return self.finish_end(link, code, reason),
                    None => break LinkEnd::Lost { reason: "reader stopped".into(), retry_after: None, was_up: true },
                },
                cmd = self.commands.recv() => match cmd {
                    None => break LinkEnd::Closed(None),
                    Some(Command::Close { reply }) => break LinkEnd::Closed(Some(reply)),
                    Some(Command::Reconnect) => break LinkEnd::Lost { reason: "reconnect requested".into(), retry_after: Some(Duration::ZERO), was_up: true },
                    Some(Command::Rebind) => self.rebind(),
                    Some(Command::Snapshot { reply }) => { let _ = reply.send(self.snapshot()); }
                    Some(Command::Request { body, reply }) => {
                        let deadline = Instant::now() + self.cfg.request_timeout;
                        if !link.request(body, Pending::Request { reply, deadline }) {
                            break LinkEnd::Lost { reason: "send queue full".into(), retry_after: None, was_up: true };
                        }
                    }
                    Some(Command::Send { chat_id, body, client_msg_id, reply }) => {
                        let mut entry = OutboxEntry::new(chat_id, body.clone(), reply);
                        if link.authenticated {
                            let req = Request::SendMessage { chat_id, client_msg_id, body };
                            entry.in_flight = link.request(req, Pending::Send(client_msg_id));
                        }
                        self.outbox.insert(client_msg_id, entry);
                    }
                    Some(Command::Watch { users, reply }) => self.on_watch(Some(&mut link), users, reply),
                    Some(Command::Foreground(fg)) => self.on_foreground(Some(&mut link), fg),
                    Some(Command::Typing { chat_id, typing }) => self.on_typing_command(Some(&mut link), chat_id, typing),
                    Some(Command::Connection { reply }) => {
                        if link.authenticated {
                            let _ = reply.send(link.conn.clone());
                        } else {
                            self.conn_waiters.push(reply);
                        }
                    }
                },
                _ = sleep_until_due(self.ack_due), if self.ack_due.is_some() => {
                    self.flush_acks(&mut link);
                }
                _ = tick.tick(), if self.tick_needed(&link) => {
                    if let Some(reason) = self.expire_requests(&mut link) {
                        break LinkEnd::Lost {
                            reason: reason.into(),
                            retry_after: None,
                            was_up: true,
                        };
                    }
                    self.retry_outbox(&mut link);
                    self.expire_typing(Instant::now());
                }
            }
        };
        self.finish(link, end)
    }

    fn finish_end(&mut self, link: Link, code: Option<ErrorCode>, reason: String) -> LinkEnd {
        let end = self.on_end(code, reason, true);
        self.finish(link, end)
    }

    /// Fails what was in flight on the link (sends go back to the outbox) and closes it.
    fn finish(&mut self, mut link: Link, end: LinkEnd) -> LinkEnd {
        for (_, p) in link.pending.drain() {
            if let Pending::Request { reply, .. } = p {
                let _ = reply.send(Err(Error::Disconnected));
            }
        }
        for entry in self.outbox.values_mut() {
            entry.in_flight = false;
        }
        link.conn.close(0u32.into(), b"bye");
        match end {
            LinkEnd::Lost {
                reason,
                retry_after,
                was_up,
            } => LinkEnd::Lost {
                reason,
                retry_after: retry_after.or(link.go_away),
                was_up,
            },
            other => other,
        }
    }

    /// Whether the 250 ms tick has anything to do: a request waiting for its answer (deadlines),
    /// a send to retry, or a typing indicator to expire. An idle client arms no timer at all, so
    /// a process holding 100k idle clients is not woken 400k times a second for nothing.
    fn tick_needed(&self, link: &Link) -> bool {
        !link.deadlines.is_empty() || !self.outbox.is_empty() || self.typing_shown()
    }

    /// After a drain of the inbound queue: acks go now, or at `ack_delay` from the first one
    /// batched (later messages in that time join the batch).
    fn schedule_acks(&mut self, link: &mut Link) {
        if self.cfg.ack_delay.is_zero() {
            self.flush_acks(link);
        } else if self.ack_due.is_none() && !self.acks.is_empty() {
            self.ack_due = Some(tokio::time::Instant::now() + self.cfg.ack_delay);
        }
    }

    /// Sends the batched acks (on an authenticated link; otherwise they wait for one).
    fn flush_acks(&mut self, link: &mut Link) {
        self.ack_due = None;
        if !link.authenticated {
            return;
        }
        for (chat_id, upto_seq) in self.acks.take() {
            link.request(Request::Ack { chat_id, upto_seq }, Pending::Ack);
        }
    }

    fn on_update(&mut self, link: &mut Link, update: Update) {
        match self.sync.apply(&update) {
            Verdict::Duplicate => {}
            Verdict::Gap => {
                link.gap = true;
                self.request_sync(link);
            }
            Verdict::Apply => {
                let pts = update.pts;
                match update.kind {
                    UpdateKind::Message(message) => {
                        let own = self.session.is_some_and(|s| s.user_id == message.sender);
                        self.acks.on_message(&message, own);
                        self.emit(ClientEvent::Message { message, own, pts });
                    }
                    UpdateKind::Receipt(r) => self.emit(ClientEvent::Receipt(r)),
                    UpdateKind::ChatJoined(c) => self.emit(ClientEvent::ChatJoined(c)),
                    UpdateKind::ChatLeft { chat_id, at_seq } => {
                        self.acks.on_left(chat_id);
                        self.emit(ClientEvent::ChatLeft { chat_id, at_seq })
                    }
                    UpdateKind::HiddenForMe { chat_id, seqs } => {
                        self.emit(ClientEvent::HiddenForMe { chat_id, seqs })
                    }
                    UpdateKind::ProfileChanged { user_id } => {
                        self.emit(ClientEvent::ProfileChanged { user_id })
                    }
                }
            }
        }
    }

    /// Drops the sync state because the server's log is behind it, and tells the app.
    pub(super) fn reset_sync(&mut self, server_latest: Option<u64>) {
        let cursor_was = self.sync.cursor.pts;
        tracing::warn!(
            cursor_was,
            ?server_latest,
            "server log is behind the cursor: resyncing from scratch"
        );
        self.sync.reset();
        self.emit(ClientEvent::SyncReset {
            cursor_was,
            server_latest,
        });
    }

    /// Applies a sync page; a page that does not advance the cursor (a hole in the log) is
    /// asked for again a bounded number of times, then the hole is skipped and reported.
    pub(super) fn on_sync_page(&mut self, link: &mut Link, page: tern_protocol::SyncPage) {
        let before = self.sync.cursor.pts;
        let first = page.updates.first().map(|u| u.pts);
        // Still syncing while the page is applied: a gap inside it must not send a request
        // of its own (that was the endless loop on a hole).
        for u in &page.updates {
            self.on_update(link, u.clone());
        }
        link.syncing = false;
        let step = link
            .holes
            .after_page(before, &self.sync, first, page.cursor.pts, page.has_more);
        match step {
            PageStep::Progress => {
                // Sync again if the log goes on, or a live update showed a gap meanwhile.
                if page.has_more || link.gap {
                    self.request_sync(link);
                }
            }
            PageStep::Retry => self.request_sync(link),
            PageStep::SkipHole { to } => {
                tracing::warn!(
                    after = before,
                    missing_to = to,
                    "skipping a hole in the update log"
                );
                self.emit(ClientEvent::SyncHole {
                    after: before,
                    missing_to: to,
                });
                self.sync.skip_to(to);
                link.syncing = true;
                for u in page.updates {
                    self.on_update(link, u);
                }
                link.syncing = false;
                if page.has_more || link.gap {
                    self.request_sync(link);
                }
            }
            PageStep::GiveUp => {
                link.gap = false;
                self.emit(ClientEvent::SyncStalled { cursor: before });
            }
        }
    }

    fn on_frame(&mut self, link: &mut Link, frame: Frame) -> Option<LinkEnd> {
        match frame {
            Frame::Response { req_id, result } => self.on_response(link, req_id, result),
            Frame::Event(Event::Update(u)) => {
                self.on_update(link, u);
                None
            }
            Frame::Event(Event::Presence(p)) => {
                self.emit(ClientEvent::Presence(p));
                None
            }
            Frame::Event(Event::Typing(t)) => {
                self.on_typing(t, false);
                None
            }
            Frame::GoAway(g) => {
                link.go_away = Some(Duration::from_millis(u64::from(g.reconnect_after_ms)));
                None
            }
            Frame::Error(e) => Some(self.on_error(e, link.authenticated, true)),
            other => Some(LinkEnd::Lost {
                reason: format!("unexpected frame {other:?}"),
                retry_after: None,
                was_up: true,
            }),
        }
    }
}

/// Sleeps until `due` (never called with `None`: the select branch is disabled then).
async fn sleep_until_due(due: Option<tokio::time::Instant>) {
    if let Some(at) = due {
        tokio::time::sleep_until(at).await;
    }
}
