//! The app-facing handle and event stream.

use tern_protocol::{
    ChatFeatures, ChatId, ChatInfo, ChatsPage, DeviceId, DeviceInfo, DevicesPage, ErrorCode,
    GroupInfo, GroupSettings, Message, MessageBody, MessageReceipts, Presence, Pts, Receipt,
    Request, Response, RichText, Sent, Seq, SessionInfo, SocialFeatures, Tokens, TypingEvent,
    UserId,
};
use tokio::sync::{mpsc, oneshot};

use crate::config::ClientConfig;
use crate::driver::{Command, Driver};
use crate::error::Error;
use crate::state::SyncState;

/// Something the app should know about.
///
/// `Message`, `Receipt`, `ChatJoined`, `ChatLeft` and `HiddenForMe` are the user's updates: each
/// is emitted once, in pts order, only when its pts is the cursor's next. Every kind of message
/// body arrives as `Message`: group changes (`MessageBody::System`), replies, reactions, edits
/// and deletes for everyone are messages with their own seq, to apply in seq order. So an app that started from cursor `c` has seen
/// every update up to `c + n` after `n` of these events, and can persist exactly that cursor
/// (rather than [`Snapshot::sync`], which may already be ahead of the events it has not read yet).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A connection is up (authenticated when `session` is set) and synced.
    Connected {
        /// Who we are, if logged in.
        session: Option<SessionInfo>,
    },
    /// The connection dropped; the client reconnects by itself.
    Disconnected {
        /// Why, for logs.
        reason: String,
    },
    /// A connection attempt failed before it was up (unreachable, TLS or handshake refused);
    /// the client tries again after a backoff. Lets an app that must not wait forever say why.
    ConnectFailed {
        /// Why, for people.
        reason: String,
    },
    /// A message, exactly once and in per-chat order. `own` is true for messages this user sent
    /// (from this or another of their devices).
    Message {
        /// The message.
        message: Message,
        /// Sent by this user.
        own: bool,
        /// Its update sequence.
        pts: Pts,
    },
    /// A member's receipt watermarks moved.
    Receipt(Receipt),
    /// This user joined a chat.
    ChatJoined(ChatInfo),
    /// This user's membership of a group ended (removed or left) at `at_seq`; nothing after it
    /// arrives until the user is added again.
    ChatLeft {
        /// The group.
        chat_id: ChatId,
        /// Seq of the system message that ended it.
        at_seq: Seq,
    },
    /// This user deleted these messages for themself (on any of their devices): hide them.
    HiddenForMe {
        /// The chat.
        chat_id: ChatId,
        /// The messages.
        seqs: Vec<Seq>,
    },
    /// A watched user's presence changed (as this user may see it). After a reconnect the
    /// watch is restored by itself and the fresh snapshot arrives as these events.
    Presence(Presence),
    /// Someone else is typing in a chat, or stopped. A `typing: true` not refreshed within
    /// its `ttl_ms` is followed by a synthesised `typing: false` (`ttl_ms` 0). `datagram`
    /// says whether it came as a QUIC datagram or on the stream (the server's fallback).
    Typing {
        /// Who, where, and whether.
        event: TypingEvent,
        /// Arrived as a QUIC datagram.
        datagram: bool,
    },
    /// A contact's or chat peer's profile changed: fetch it with `Client::profile`.
    ProfileChanged {
        /// Whose profile.
        user_id: UserId,
    },
    /// New tokens: persist them to resume without OTP.
    TokensUpdated(Tokens),
    /// The session is over (device revoked, refresh token reused, logout). The client stops.
    SessionEnded {
        /// The server's reason code, if it gave one.
        code: Option<ErrorCode>,
        /// Why.
        reason: String,
    },
    /// The server's update log is behind this device's cursor (it was restored from an older
    /// backup): the client dropped its sync state and replays the log from the start. Updates
    /// that follow may repeat ones the app already has; apps that keep their own copy should
    /// treat the replay as authoritative (e.g. rebuild, or dedupe by `(chat_id, seq)`).
    SyncReset {
        /// The cursor the device had.
        cursor_was: Pts,
        /// The server's latest pts, when it said (in `Welcome`).
        server_latest: Option<Pts>,
    },
    /// Updates `after + 1 ..= missing_to` never arrived although they were asked for
    /// [`crate::MAX_HOLE_RETRIES`] more times; the client moved past them. A message among them
    /// shows as a per-chat seq gap, which `messages` can fill.
    SyncHole {
        /// The cursor before the hole.
        after: Pts,
        /// The last missing pts.
        missing_to: Pts,
    },
    /// The server keeps answering sync with nothing newer than `cursor`; the client stopped
    /// asking until the next connection or live update.
    SyncStalled {
        /// Where the cursor stays.
        cursor: Pts,
    },
}

/// The stream of [`ClientEvent`]s. Drain it: events queue without bound until read.
#[derive(Debug)]
pub struct Events {
    pub(crate) rx: mpsc::UnboundedReceiver<ClientEvent>,
}

impl Events {
    /// The next event; `None` once the client has stopped.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        self.rx.recv().await
    }

    /// The next event if one is already queued, without waiting.
    pub fn try_next(&mut self) -> Option<ClientEvent> {
        self.rx.try_recv().ok()
    }
}

/// Where the client stands; persist `tokens` and `sync` to resume later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Logged-in identity.
    pub session: Option<SessionInfo>,
    /// Current tokens.
    pub tokens: Option<Tokens>,
    /// Sync position.
    pub sync: SyncState,
    /// Sends not yet acknowledged by the server.
    pub outbox_len: usize,
    /// Whether a connection is up.
    pub connected: bool,
    /// The message-feature limits of the last `Welcome` (`None` before the first connection).
    pub features: Option<ChatFeatures>,
    /// The social limits of the last `Welcome`.
    pub social: Option<SocialFeatures>,
    /// Typing indicators received as datagrams.
    pub typing_datagrams_in: u64,
    /// Typing sent (as datagrams, as `SetTyping` requests on the stream).
    pub typing_out: (u64, u64),
    /// Connections that sent `Hello` as 0-RTT early data: (accepted, refused by the server).
    /// A connection without a resumable session does a full handshake and counts in neither.
    pub zero_rtt: (u64, u64),
}

/// A handle to the client. Cheap to clone; all clones talk to the same driver.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    device_name: std::sync::Arc<str>,
}

impl Client {
    /// Starts the driver (inside a tokio runtime) and returns the handle and the event stream.
    pub fn start(config: ClientConfig) -> Result<(Client, Events), Error> {
        let (commands, rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let device_name = std::sync::Arc::from(config.device_name.as_str());
        let driver = Driver::new(config, rx, events_tx)?;
        tokio::spawn(driver.run());
        Ok((
            Client {
                commands,
                device_name,
            },
            Events { rx: events_rx },
        ))
    }

    /// Sends a raw request and waits for its answer.
    pub async fn request(&self, body: Request) -> Result<Response, Error> {
        if !body.within_limits() {
            return Err(Error::Rejected(tern_protocol::ErrorBody::new(
                ErrorCode::TooLarge,
                format!("a field of {} is over its protocol limit", body.name()),
            )));
        }
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Request { body, reply })
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Asks the server to send a login code to a phone number or email address.
    pub async fn request_otp(&self, identifier: &str) -> Result<u32, Error> {
        match self
            .request(Request::RequestOtp {
                identifier: identifier.into(),
            })
            .await?
        {
            Response::OtpRequested { expires_in_s } => Ok(expires_in_s),
            other => Err(unexpected(&other)),
        }
    }

    /// Logs in with a code; the connection becomes authenticated and stays so across reconnects.
    pub async fn verify_otp(&self, identifier: &str, code: &str) -> Result<SessionInfo, Error> {
        let device_name = self.device_name.to_string();
        match self
            .request(Request::VerifyOtp {
                identifier: identifier.into(),
                code: code.into(),
                device_name,
            })
            .await?
        {
            Response::LoggedIn(g) => Ok(SessionInfo {
                user_id: g.user_id,
                device_id: g.device_id,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// Opens (or finds) the direct chat with `peer`.
    pub async fn open_direct_chat(&self, peer: UserId) -> Result<ChatInfo, Error> {
        match self.request(Request::OpenDirectChat { peer }).await? {
            Response::Chat(c) => Ok(c),
            other => Err(unexpected(&other)),
        }
    }

    /// All of the user's chats, fetched page by page.
    pub async fn chats(&self) -> Result<Vec<ChatInfo>, Error> {
        let mut all = Vec::new();
        let mut after = ChatId(0);
        loop {
            let page = self.chats_page(after, LIST_PAGE).await?;
            all.extend(page.chats);
            match page.next {
                Some(next) if next > after => after = next,
                _ => return Ok(all),
            }
        }
    }

    /// One page of the user's chats with ids above `after` (`ChatId(0)` for the first).
    pub async fn chats_page(&self, after: ChatId, limit: u32) -> Result<ChatsPage, Error> {
        match self
            .request(Request::ListChatsPage { after, limit })
            .await?
        {
            Response::ChatsPage(p) => Ok(p),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends a text message through the outbox: retried with the same idempotency key across
    /// reconnects until the server confirms it is durable.
    pub async fn send_text(&self, chat_id: ChatId, text: impl Into<String>) -> Result<Sent, Error> {
        self.send(chat_id, MessageBody::Text(text.into()), rand::random())
            .await
    }

    /// Sends with an explicit idempotency key (apps that persist their outbox use this). Any
    /// body a client may write: text, rich text, reaction, edit, delete for everyone. A body the
    /// server is bound to refuse fails at once with [`Error::Rejected`].
    pub async fn send(
        &self,
        chat_id: ChatId,
        body: MessageBody,
        client_msg_id: u64,
    ) -> Result<Sent, Error> {
        crate::body::check(&body)?;
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Send {
                chat_id,
                body,
                client_msg_id,
                reply,
            })
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Replies to message `to_seq` of the chat (through the outbox, like [`Client::send_text`]).
    pub async fn reply(
        &self,
        chat_id: ChatId,
        to_seq: Seq,
        text: impl Into<String>,
    ) -> Result<Sent, Error> {
        let body = crate::body::reply(to_seq, text.into());
        self.send(chat_id, body, rand::random()).await
    }

    /// Sends text with a reply reference and/or mentions (through the outbox).
    pub async fn send_rich(&self, chat_id: ChatId, rich: RichText) -> Result<Sent, Error> {
        self.send(chat_id, MessageBody::Rich(rich), rand::random())
            .await
    }

    /// Reacts to message `target` with `emoji`, replacing this user's earlier reaction to it;
    /// `None` removes it (through the outbox).
    pub async fn react(
        &self,
        chat_id: ChatId,
        target: Seq,
        emoji: Option<String>,
    ) -> Result<Sent, Error> {
        let body = MessageBody::Reaction { target, emoji };
        self.send(chat_id, body, rand::random()).await
    }

    /// Replaces the text of this user's message `target` (within the server's edit window, see
    /// [`Client::features`]; through the outbox).
    pub async fn edit(
        &self,
        chat_id: ChatId,
        target: Seq,
        text: impl Into<String>,
    ) -> Result<Sent, Error> {
        let body = MessageBody::Edit {
            target,
            text: text.into(),
        };
        self.send(chat_id, body, rand::random()).await
    }

    /// Deletes message `target` for everyone: the sender within the delete window, a group
    /// admin any message at any time (through the outbox).
    pub async fn delete_for_everyone(&self, chat_id: ChatId, target: Seq) -> Result<Sent, Error> {
        self.send(chat_id, MessageBody::Delete { target }, rand::random())
            .await
    }

    /// Hides messages on this user's devices only; every device gets
    /// [`ClientEvent::HiddenForMe`].
    pub async fn delete_for_me(&self, chat_id: ChatId, seqs: Vec<Seq>) -> Result<(), Error> {
        match self.request(Request::DeleteForMe { chat_id, seqs }).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Who message `seq` (sent by this user) was delivered to and read by, with times.
    pub async fn message_receipts(
        &self,
        chat_id: ChatId,
        seq: Seq,
    ) -> Result<MessageReceipts, Error> {
        match self
            .request(Request::GetMessageReceipts { chat_id, seq })
            .await?
        {
            Response::MessageReceipts(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// Creates a group with `members` (besides this user, who becomes its admin).
    pub async fn create_group(
        &self,
        title: impl Into<String>,
        members: Vec<UserId>,
    ) -> Result<ChatInfo, Error> {
        let title = title.into();
        match self
            .request(Request::CreateGroup { title, members })
            .await?
        {
            Response::Chat(c) => Ok(c),
            other => Err(unexpected(&other)),
        }
    }

    /// Adds members to a group; answers the system message that says so.
    pub async fn add_members(&self, chat_id: ChatId, members: Vec<UserId>) -> Result<Sent, Error> {
        sent(
            self.request(Request::AddMembers { chat_id, members })
                .await?,
        )
    }

    /// Removes a member from a group (admins only).
    pub async fn remove_member(&self, chat_id: ChatId, user_id: UserId) -> Result<Sent, Error> {
        sent(
            self.request(Request::RemoveMember { chat_id, user_id })
                .await?,
        )
    }

    /// Leaves a group; this user's devices get [`ClientEvent::ChatLeft`].
    pub async fn leave_group(&self, chat_id: ChatId) -> Result<Sent, Error> {
        sent(self.request(Request::LeaveGroup { chat_id }).await?)
    }

    /// Makes a member an admin (`admin`) or takes admin rights away (admins only).
    pub async fn set_admin(
        &self,
        chat_id: ChatId,
        user_id: UserId,
        admin: bool,
    ) -> Result<Sent, Error> {
        let body = Request::SetAdmin {
            chat_id,
            user_id,
            admin,
        };
        sent(self.request(body).await?)
    }

    /// Changes a group's title and/or description (`None`: unchanged).
    pub async fn edit_group_info(
        &self,
        chat_id: ChatId,
        title: Option<String>,
        description: Option<String>,
    ) -> Result<Sent, Error> {
        let body = Request::EditGroupInfo {
            chat_id,
            title,
            description,
        };
        sent(self.request(body).await?)
    }

    /// Replaces a group's settings (admins only).
    pub async fn set_group_settings(
        &self,
        chat_id: ChatId,
        settings: GroupSettings,
    ) -> Result<Sent, Error> {
        sent(
            self.request(Request::SetGroupSettings { chat_id, settings })
                .await?,
        )
    }

    /// A group's title, description, settings and members.
    pub async fn group_info(&self, chat_id: ChatId) -> Result<GroupInfo, Error> {
        match self.request(Request::GetGroupInfo { chat_id }).await? {
            Response::GroupInfo(g) => Ok(g),
            other => Err(unexpected(&other)),
        }
    }

    /// The server's message-feature limits (edit and delete windows, group size) from its last
    /// `Welcome`; `None` before the first connection.
    pub async fn features(&self) -> Result<Option<ChatFeatures>, Error> {
        Ok(self.snapshot().await?.features)
    }

    /// Marks the chat read up to `upto`.
    pub async fn mark_read(&self, chat_id: ChatId, upto_seq: Seq) -> Result<(), Error> {
        self.request(Request::MarkRead { chat_id, upto_seq })
            .await
            .map(|_| ())
    }

    /// Every member's receipt watermarks.
    pub async fn receipts(&self, chat_id: ChatId) -> Result<Vec<Receipt>, Error> {
        match self.request(Request::GetReceipts { chat_id }).await? {
            Response::Receipts(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// A range of a chat's history.
    pub async fn messages(
        &self,
        chat_id: ChatId,
        from_seq: Seq,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        match self
            .request(Request::GetMessages {
                chat_id,
                from_seq,
                limit,
            })
            .await?
        {
            Response::Messages(m) => Ok(m),
            other => Err(unexpected(&other)),
        }
    }

    /// All of the user's devices, fetched page by page.
    pub async fn devices(&self) -> Result<Vec<DeviceInfo>, Error> {
        let mut all = Vec::new();
        let mut after = DeviceId(0);
        loop {
            let page = self.devices_page(after, LIST_PAGE).await?;
            all.extend(page.devices);
            match page.next {
                Some(next) if next > after => after = next,
                _ => return Ok(all),
            }
        }
    }

    /// One page of the user's devices with ids above `after` (`DeviceId(0)` for the first).
    pub async fn devices_page(&self, after: DeviceId, limit: u32) -> Result<DevicesPage, Error> {
        match self
            .request(Request::ListDevicesPage { after, limit })
            .await?
        {
            Response::DevicesPage(p) => Ok(p),
            other => Err(unexpected(&other)),
        }
    }

    /// Revokes one of the user's devices; its connections are closed.
    pub async fn revoke_device(&self, device_id: DeviceId) -> Result<(), Error> {
        self.request(Request::RevokeDevice { device_id })
            .await
            .map(|_| ())
    }

    /// Where the client stands.
    pub async fn snapshot(&self) -> Result<Snapshot, Error> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Snapshot { reply })
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())
    }

    /// Drops the current connection and reconnects at once (e.g. after a network change).
    pub fn reconnect(&self) {
        let _ = self.commands.send(Command::Reconnect);
    }

    /// Moves the connection to a new local UDP socket (a new source port), as after a network
    /// change. QUIC migrates the connection when the server can follow; otherwise the server
    /// answers with a stateless reset and the client reconnects and syncs. With a shared endpoint
    /// this moves every connection of that endpoint.
    pub fn rebind(&self) {
        let _ = self.commands.send(Command::Rebind);
    }

    /// Stops the client; pending calls fail with `Error::Closed`.
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Close { reply }).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Items asked for per page by [`Client::chats`] and [`Client::devices`].
const LIST_PAGE: u32 = 256;

pub(crate) fn closed() -> Error {
    Error::Closed("the client has stopped".into())
}

fn sent(r: Response) -> Result<Sent, Error> {
    match r {
        Response::Sent(s) => Ok(s),
        other => Err(unexpected(&other)),
    }
}

pub(crate) fn unexpected(r: &Response) -> Error {
    Error::Protocol(format!("unexpected response {r:?}"))
}
