//! What waits for an answer: sends in the outbox (kept until the server says they are durable,
//! resent with the same `client_msg_id`, backed off after a retryable refusal), requests made
//! while offline, and the requests in flight on a link: their answers, their deadlines, and
//! failing them all when the client ends.
//!
//! It exists apart from serving because these outlive a link: the outbox and the waiting
//! requests are carried over from one connection to the next.

use std::time::Instant;

use tern_protocol::{ErrorBody, ErrorCode, Request, Response, SessionInfo};

use super::{Command, Driver, Link, LinkEnd, OutboxEntry, Pending};
use crate::client::ClientEvent;
use crate::error::Error;
use crate::state::refusal_backoff;

impl Driver {
    pub(super) fn queue_offline(&mut self, cmd: Command) {
        match cmd {
            Command::Request { body, reply } => {
                self.waiting
                    .push_back((body, reply, Instant::now() + self.cfg.request_timeout));
            }
            Command::Send {
                chat_id,
                body,
                client_msg_id,
                reply,
            } => {
                self.outbox
                    .insert(client_msg_id, OutboxEntry::new(chat_id, body, reply));
            }
            Command::Snapshot { reply } => {
                let _ = reply.send(self.snapshot());
            }
            Command::Watch { users, reply } => self.on_watch(None, users, reply),
            Command::Foreground(foreground) => self.on_foreground(None, foreground),
            // A hint: dropped while offline.
            Command::Typing { .. } => {}
            Command::Connection { reply } => self.conn_waiters.push(reply),
            Command::Reconnect | Command::Rebind | Command::Close { .. } => {}
        }
    }

    pub(super) fn fail_all(&mut self, reason: &str) {
        for (_, entry) in std::mem::take(&mut self.outbox) {
            if let Some(r) = entry.reply {
                let _ = r.send(Err(Error::Closed(reason.into())));
            }
        }
        for (_, reply, _) in self.waiting.drain(..) {
            let _ = reply.send(Err(Error::Closed(reason.into())));
        }
        if let Some(r) = self.social.watch_reply.take() {
            let _ = r.send(Err(Error::Closed(reason.into())));
        }
    }

    pub(super) fn flush_waiting(&mut self, link: &mut Link) {
        while let Some((body, reply, deadline)) = self.waiting.pop_front() {
            if !link.request(body, Pending::Request { reply, deadline }) {
                break;
            }
        }
    }

    /// Gives up on requests past their deadline: the app's requests fail with
    /// [`Error::Timeout`], a send goes back to the outbox (retried with the same id), a lost ack
    /// is forgotten. Returns why the link must be dropped, when it must: a timed-out `Refresh` or
    /// `Sync` leaves the session half set up, and an unauthenticated request (login, refresh) may
    /// have logged the connection in on the server anyway, so its state is unknown. A new
    /// connection starts over; a refresh retried there gets the same new tokens (the server's
    /// grace window).
    pub(super) fn expire_requests(&mut self, link: &mut Link) -> Option<&'static str> {
        let now = Instant::now();
        let expired: Vec<u32> = link
            .deadlines
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut restart = None;
        for id in expired {
            link.deadlines.remove(&id);
            match link.pending.remove(&id) {
                Some(Pending::Request { reply, .. }) => {
                    let _ = reply.send(Err(Error::Timeout));
                    if !link.authenticated {
                        restart = Some("an unauthenticated request timed out");
                    }
                }
                Some(Pending::Send(cmid)) => {
                    if let Some(entry) = self.outbox.get_mut(&cmid) {
                        entry.in_flight = false;
                    }
                }
                Some(Pending::Refresh) => restart = Some("refresh timed out"),
                Some(Pending::Sync) => restart = Some("sync timed out"),
                // The watch list stays; the next session sends it again.
                Some(Pending::Watch(reply)) => {
                    if let Some(r) = reply {
                        let _ = r.send(Err(Error::Timeout));
                    }
                }
                Some(Pending::Ack) | None => {}
            }
        }
        restart
    }

    pub(super) fn retry_outbox(&mut self, link: &mut Link) {
        if !link.authenticated {
            return;
        }
        let now = Instant::now();
        let due = |e: &OutboxEntry| !e.in_flight && e.not_before.is_none_or(|t| t <= now);
        for (cmid, entry) in self.outbox.iter_mut().filter(|(_, e)| due(e)) {
            let req = Request::SendMessage {
                chat_id: entry.chat_id,
                client_msg_id: *cmid,
                body: entry.body.clone(),
            };
            entry.in_flight = link.request(req, Pending::Send(*cmid));
        }
    }

    /// New tokens and an authenticated session after `VerifyOtp` or `Refresh`.
    fn on_logged_in(&mut self, link: &mut Link, grant: &tern_protocol::LoginGrant) {
        self.tokens = Some(grant.tokens.clone());
        self.emit(ClientEvent::TokensUpdated(grant.tokens.clone()));
        let session = SessionInfo {
            user_id: grant.user_id,
            device_id: grant.device_id,
        };
        self.on_authenticated(link, session, None);
    }

    pub(super) fn on_response(
        &mut self,
        link: &mut Link,
        req_id: u32,
        result: Result<Response, ErrorBody>,
    ) -> Option<LinkEnd> {
        let pending = link.pending.remove(&req_id)?;
        link.deadlines.remove(&req_id);
        match pending {
            Pending::Request { reply, .. } => {
                if let Ok(Response::LoggedIn(g)) = &result {
                    self.on_logged_in(link, g);
                }
                let _ = reply.send(result.map_err(Error::Server));
            }
            Pending::Refresh => match result {
                Ok(Response::LoggedIn(g)) => self.on_logged_in(link, &g),
                Ok(other) => {
                    return Some(LinkEnd::Lost {
                        reason: format!("bad refresh answer {other:?}"),
                        retry_after: None,
                        was_up: true,
                    });
                }
                Err(e) if e.code.is_retryable() => {
                    return Some(LinkEnd::Lost {
                        reason: e.to_string(),
                        retry_after: None,
                        was_up: true,
                    });
                }
                Err(e) => {
                    return Some(LinkEnd::SessionEnded {
                        code: Some(e.code),
                        reason: e.message,
                    });
                }
            },
            Pending::Send(cmid) => match result {
                Ok(Response::Sent(sent)) => {
                    if let Some(r) = self.outbox.remove(&cmid).and_then(|e| e.reply) {
                        let _ = r.send(Ok(sent));
                    }
                }
                Err(e) if e.code.is_retryable() => {
                    if let Some(entry) = self.outbox.get_mut(&cmid) {
                        entry.in_flight = false;
                        entry.not_before =
                            Some(Instant::now() + refusal_backoff(entry.refusals, rand::random()));
                        entry.refusals = entry.refusals.saturating_add(1);
                    }
                }
                other => {
                    if let Some(r) = self.outbox.remove(&cmid).and_then(|e| e.reply) {
                        let err = match other {
                            Err(e) => Error::Server(e),
                            Ok(resp) => Error::Protocol(format!("unexpected send answer {resp:?}")),
                        };
                        let _ = r.send(Err(err));
                    }
                }
            },
            Pending::Sync => match result {
                Ok(Response::SyncPage(page)) => self.on_sync_page(link, page),
                Err(e) if e.code == ErrorCode::CursorAhead => {
                    link.syncing = false;
                    self.reset_sync(None);
                    self.request_sync(link);
                }
                Ok(_) | Err(_) => {
                    link.syncing = false;
                    return Some(LinkEnd::Lost {
                        reason: "sync failed".into(),
                        retry_after: None,
                        was_up: true,
                    });
                }
            },
            Pending::Ack => {}
            Pending::Watch(reply) => self.on_watch_answer(reply, result),
        }
        None
    }
}
