//! Presence watches, foreground state and typing on a link.
//!
//! What the app asked for is driver state, not link state: the watch list and the foreground
//! flag survive reconnects and are sent again each time a session comes up, so an app never
//! re-subscribes by hand. Typing goes out as a QUIC datagram when the connection takes one of
//! that size, else as `SetTyping` on the stream; offline it is dropped (a stale "typing" is
//! worse than none). Received typing expires here after its `ttl_ms` without a refresh: the
//! app gets a synthesised `typing: false`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_protocol::codec;
use tern_protocol::{ChatId, Datagram, Presence, Request, Response, TypingEvent, UserId};
use tokio::sync::oneshot;

use super::{Driver, Link, Pending};
use crate::client::ClientEvent;
use crate::error::Error;

/// Most typing indicators tracked for expiry; beyond it the oldest is expired at once.
const MAX_TYPING_TRACKED: usize = 1024;

/// The social state the driver keeps across links.
#[derive(Default)]
pub(super) struct SocialState {
    /// The users the app watches (restored on every new session).
    pub(super) watch: Vec<UserId>,
    /// An app `watch_presence` call waiting for a session to come up.
    pub(super) watch_reply: Option<oneshot::Sender<Result<Vec<Presence>, Error>>>,
    /// False after the app said it went to the background (restored on every new session).
    pub(super) background: bool,
    /// Typing shown to the app, and when each expires unless refreshed.
    typing: Vec<(ChatId, UserId, Instant)>,
    /// Typing datagrams received (for diagnostics and tests).
    pub(super) datagrams_in: u64,
    /// Typing sent as datagrams, and as `SetTyping` requests.
    pub(super) typing_out: (u64, u64),
}

impl Driver {
    /// The app replaced its watch list.
    pub(super) fn on_watch(
        &mut self,
        link: Option<&mut Link>,
        users: Vec<UserId>,
        reply: oneshot::Sender<Result<Vec<Presence>, Error>>,
    ) {
        self.social.watch = users.clone();
        if let Some(old) = self.social.watch_reply.replace(reply) {
            let _ = old.send(Err(Error::Protocol("replaced by a later watch".into())));
        }
        if let Some(link) = link.filter(|l| l.authenticated) {
            let reply = self.social.watch_reply.take();
            link.request(Request::WatchPresence { users }, Pending::Watch(reply));
        }
    }

    /// The app went to the foreground or the background.
    pub(super) fn on_foreground(&mut self, link: Option<&mut Link>, foreground: bool) {
        self.social.background = !foreground;
        if let Some(link) = link.filter(|l| l.authenticated) {
            link.request(Request::SetForeground { foreground }, Pending::Ack);
        }
    }

    /// A session came up: send the watch list and the foreground flag again.
    pub(super) fn restore_social(&mut self, link: &mut Link) {
        if self.social.background {
            link.request(Request::SetForeground { foreground: false }, Pending::Ack);
        }
        let reply = self.social.watch_reply.take();
        if self.social.watch.is_empty() && reply.is_none() {
            return;
        }
        let users = self.social.watch.clone();
        link.request(Request::WatchPresence { users }, Pending::Watch(reply));
    }

    /// The answer to a watch the driver sent by itself.
    pub(super) fn on_watch_answer(
        &mut self,
        reply: Option<oneshot::Sender<Result<Vec<Presence>, Error>>>,
        result: Result<Response, tern_protocol::ErrorBody>,
    ) {
        match (reply, result) {
            (Some(reply), Ok(Response::Presence(list))) => {
                let _ = reply.send(Ok(list));
            }
            (Some(reply), Ok(other)) => {
                let _ = reply.send(Err(Error::Protocol(format!(
                    "unexpected watch answer {other:?}"
                ))));
            }
            (Some(reply), Err(e)) => {
                let _ = reply.send(Err(Error::Server(e)));
            }
            // Restored after a reconnect: what changed meanwhile reaches the app as events.
            (None, Ok(Response::Presence(list))) => {
                for p in list {
                    self.emit(ClientEvent::Presence(p));
                }
            }
            (None, other) => tracing::debug!(?other, "restoring the presence watch failed"),
        }
    }

    /// The app is typing (or stopped) in a chat.
    pub(super) fn on_typing_command(
        &mut self,
        link: Option<&mut Link>,
        chat_id: ChatId,
        typing: bool,
    ) {
        let Some(link) = link.filter(|l| l.authenticated) else {
            return;
        };
        let datagram = Datagram::Typing { chat_id, typing };
        if let Ok(bytes) = codec::encode_datagram(&datagram)
            && link
                .conn
                .max_datagram_size()
                .is_some_and(|max| max >= bytes.len())
            && link.conn.send_datagram(Bytes::from(bytes)).is_ok()
        {
            self.social.typing_out.0 += 1;
            return;
        }
        self.social.typing_out.1 += 1;
        link.request(Request::SetTyping { chat_id, typing }, Pending::Ack);
    }

    /// A datagram from the server.
    pub(super) fn on_datagram(&mut self, bytes: &[u8]) {
        match codec::decode_datagram(bytes) {
            Ok(Datagram::TypingEvent(event)) => {
                self.social.datagrams_in += 1;
                self.on_typing(event, true);
            }
            Ok(other) => tracing::debug!(?other, "ignoring a client-to-server datagram"),
            Err(e) => tracing::debug!(error = %e, "ignoring an undecodable datagram"),
        }
    }

    /// Someone's typing, from a datagram or a stream event.
    pub(super) fn on_typing(&mut self, event: TypingEvent, datagram: bool) {
        let key = (event.chat_id, event.user_id);
        self.social.typing.retain(|(c, u, _)| (*c, *u) != key);
        if event.typing {
            if self.social.typing.len() >= MAX_TYPING_TRACKED {
                let (chat_id, user_id, _) = self.social.typing.remove(0);
                self.emit_stopped(chat_id, user_id);
            }
            let ttl = Duration::from_millis(u64::from(event.ttl_ms));
            self.social
                .typing
                .push((event.chat_id, event.user_id, Instant::now() + ttl));
        }
        self.emit(ClientEvent::Typing { event, datagram });
    }

    /// Expires typing that was not refreshed in time.
    /// Whether a typing indicator shown to the app is waiting to expire.
    pub(super) fn typing_shown(&self) -> bool {
        !self.social.typing.is_empty()
    }

    pub(super) fn expire_typing(&mut self, now: Instant) {
        let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.social.typing)
            .into_iter()
            .partition(|(_, _, at)| *at <= now);
        self.social.typing = kept;
        for (chat_id, user_id, _) in expired {
            self.emit_stopped(chat_id, user_id);
        }
    }

    fn emit_stopped(&self, chat_id: ChatId, user_id: UserId) {
        self.emit(ClientEvent::Typing {
            event: TypingEvent {
                chat_id,
                user_id,
                typing: false,
                ttl_ms: 0,
            },
            datagram: false,
        });
    }
}
