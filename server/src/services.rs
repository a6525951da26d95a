//! The services a connection talks to, and the mapping from requests to service calls.
//!
//! Nothing here knows about QUIC: the transport decodes frames, runs the session state machine and
//! hands authorised requests to [`Services::handle`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use tern_protocol::{ErrorBody, ErrorCode, LoginGrant, Request, Response, SessionInfo, UserId};

use crate::auth::AuthService;
use crate::chat::ChatService;
use crate::groups::GroupService;
use crate::media::MediaService;
use crate::metrics::{Metrics, ShardSeries};
use crate::presence::PresenceService;
use crate::router::Router;
use crate::social::SocialService;
use crate::storage::GroupOp;

/// Everything a connection may call, shared by all connections.
#[derive(Debug, Clone)]
pub struct Services {
    /// Login, tokens, devices.
    pub auth: Arc<AuthService>,
    /// Chats and messages.
    pub chat: Arc<ChatService>,
    /// Group membership and settings.
    pub groups: Arc<GroupService>,
    /// Profiles, contacts, blocking, privacy.
    pub social: Arc<SocialService>,
    /// Presence watches and typing.
    pub presence: Arc<PresenceService>,
    /// Media uploads, downloads and references.
    pub media: Arc<MediaService>,
    /// Live connections.
    pub router: Arc<Router>,
    /// Counters.
    pub metrics: Metrics,
    /// Connection idle timeout, announced in `Welcome`.
    pub idle_timeout_ms: u32,
}

/// What a request did to the session besides its answer.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionChange {
    /// Nothing.
    None,
    /// The session is now authenticated as this device.
    Authenticated(SessionInfo),
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// Authenticated identity, if any.
    pub session: Option<SessionInfo>,
    /// Source address, for rate limits.
    pub addr: IpAddr,
    /// The connection asking, for per-connection state (presence watches, foreground).
    pub conn: ConnRef,
}

/// One connection, as other parts of the server name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    /// The shard that owns it.
    pub shard: usize,
    /// Its id (unique per process).
    pub conn_id: u64,
}

impl Services {
    /// Answers one request. The session state machine has already refused requests that need
    /// authentication on unauthenticated sessions.
    pub async fn handle(
        &self,
        shard: &ShardSeries,
        caller: Caller,
        request: Request,
    ) -> (Result<Response, ErrorBody>, SessionChange) {
        let name = request.name();
        let started = Instant::now();
        let (result, change) = self.dispatch(caller, request).await;
        let outcome = result.as_ref().map(|_| ()).map_err(|e| e.code);
        shard.request(name, outcome, started.elapsed());
        (result, change)
    }

    async fn dispatch(
        &self,
        caller: Caller,
        request: Request,
    ) -> (Result<Response, ErrorBody>, SessionChange) {
        let now = Instant::now();
        let session = match (caller.session, &request) {
            (None, Request::RequestOtp { identifier }) => {
                let r = self.auth.request_otp(identifier, caller.addr, now).await;
                return (
                    r.map(|expires_in_s| Response::OtpRequested { expires_in_s }),
                    SessionChange::None,
                );
            }
            (
                None,
                Request::VerifyOtp {
                    identifier,
                    code,
                    device_name,
                },
            ) => {
                let grant = self
                    .auth
                    .verify_otp(identifier, code, device_name, caller.addr, now)
                    .await;
                return logged_in(grant);
            }
            (None, Request::Refresh { refresh_token }) => {
                return logged_in(self.auth.refresh(refresh_token, caller.addr, now).await);
            }
            (_, Request::Ping) => return (Ok(Response::Pong), SessionChange::None),
            (
                Some(_),
                Request::RequestOtp { .. } | Request::VerifyOtp { .. } | Request::Refresh { .. },
            ) => {
                let e = ErrorBody::new(
                    ErrorCode::InvalidArgument,
                    "this session is already authenticated",
                );
                return (Err(e), SessionChange::None);
            }
            (None, _) => {
                let e = ErrorBody::new(ErrorCode::Unauthenticated, "authenticate first");
                return (Err(e), SessionChange::None);
            }
            (Some(s), _) => s,
        };
        let result = match request {
            Request::Logout => self
                .auth
                .revoke_device(session, session.device_id)
                .await
                .map(|()| Response::Done),
            Request::ListDevices => self.auth.devices(session).await.map(Response::Devices),
            Request::RevokeDevice { device_id } => self
                .auth
                .revoke_device(session, device_id)
                .await
                .map(|()| Response::Done),
            Request::OpenDirectChat { peer } => self
                .chat
                .open_direct(session, peer)
                .await
                .map(Response::Chat),
            Request::ListChats => self.chat.list(session).await.map(Response::Chats),
            Request::SendMessage {
                chat_id,
                client_msg_id,
                body,
            } => self
                .send_message(session, chat_id, client_msg_id, body)
                .await
                .map(Response::Sent),
            Request::Ack { chat_id, upto_seq } => self
                .chat
                .ack(session, chat_id, upto_seq)
                .await
                .map(|_| Response::Done),
            Request::MarkRead { chat_id, upto_seq } => self
                .chat
                .mark_read(session, chat_id, upto_seq)
                .await
                .map(|_| Response::Done),
            Request::Sync { after, limit } => self
                .chat
                .sync(session, after, limit)
                .await
                .map(Response::SyncPage),
            Request::GetMessages {
                chat_id,
                from_seq,
                limit,
            } => self
                .chat
                .messages(session, chat_id, from_seq, limit)
                .await
                .map(Response::Messages),
            Request::GetReceipts { chat_id } => self
                .chat
                .receipts(session, chat_id)
                .await
                .map(Response::Receipts),
            Request::ListChatsPage { after, limit } => self
                .chat
                .list_page(session, after, limit)
                .await
                .map(Response::ChatsPage),
            Request::ListDevicesPage { after, limit } => self
                .auth
                .devices_page(session, after, limit)
                .await
                .map(Response::DevicesPage),
            Request::CreateGroup { title, members } => self
                .groups
                .create(session, title, members)
                .await
                .map(Response::Chat),
            Request::AddMembers { chat_id, members } => self
                .groups
                .change(session, chat_id, GroupOp::Add(members))
                .await
                .map(Response::Sent),
            Request::RemoveMember { chat_id, user_id } => self
                .groups
                .change(session, chat_id, GroupOp::Remove(user_id))
                .await
                .map(Response::Sent),
            Request::LeaveGroup { chat_id } => self
                .groups
                .change(session, chat_id, GroupOp::Leave)
                .await
                .map(Response::Sent),
            Request::SetAdmin {
                chat_id,
                user_id,
                admin,
            } => self
                .groups
                .change(
                    session,
                    chat_id,
                    GroupOp::SetAdmin {
                        user: user_id,
                        admin,
                    },
                )
                .await
                .map(Response::Sent),
            Request::EditGroupInfo {
                chat_id,
                title,
                description,
            } => self
                .groups
                .change(session, chat_id, GroupOp::EditInfo { title, description })
                .await
                .map(Response::Sent),
            Request::SetGroupSettings { chat_id, settings } => self
                .groups
                .settings(session, chat_id, settings)
                .await
                .map(Response::Sent),
            Request::GetGroupInfo { chat_id } => self
                .groups
                .info(session, chat_id)
                .await
                .map(Response::GroupInfo),
            Request::GetMessageReceipts { chat_id, seq } => self
                .chat
                .message_receipts(session, chat_id, seq)
                .await
                .map(Response::MessageReceipts),
            Request::DeleteForMe { chat_id, seqs } => self
                .chat
                .delete_for_me(session, chat_id, seqs)
                .await
                .map(|()| Response::Done),
            Request::GetProfile { user_id } => self
                .social
                .get_profile(session, user_id)
                .await
                .map(Response::Profile),
            Request::SetProfile(edit) => self
                .social
                .set_profile(session, edit)
                .await
                .map(Response::Profile),
            Request::SetUsername { username } => self
                .social
                .set_username(session, username)
                .await
                .map(Response::Profile),
            Request::LookupUser(query) => self
                .social
                .lookup(session, query)
                .await
                .map(Response::Lookup),
            Request::AddContact { user_id } => {
                let r = self.social.add_contact(session, user_id).await;
                self.relations_changed(r, &[session.user_id, user_id])
            }
            Request::RemoveContact { user_id } => {
                let r = self.social.remove_contact(session, user_id).await;
                self.relations_changed(r, &[session.user_id, user_id])
            }
            Request::ListContacts => self.social.contacts(session).await.map(Response::Profiles),
            Request::Block { user_id } => {
                let r = self.social.block(session, user_id).await;
                self.relations_changed(r, &[session.user_id, user_id])
            }
            Request::Unblock { user_id } => {
                let r = self.social.unblock(session, user_id).await;
                self.relations_changed(r, &[session.user_id, user_id])
            }
            Request::ListBlocked => self.social.blocked(session).await.map(Response::Users),
            Request::GetPrivacy => self.social.privacy(session).await.map(Response::Privacy),
            Request::SetPrivacy(settings) => {
                let r = self.social.set_privacy(session, settings).await;
                if r.is_ok() {
                    self.social_committed(&[session.user_id]);
                }
                r.map(Response::Privacy)
            }
            Request::WatchPresence { users } => self
                .presence
                .watch(session, caller.conn, users)
                .await
                .map(Response::Presence),
            Request::SetForeground { foreground } => self
                .presence
                .set_foreground(session, caller.conn, foreground)
                .await
                .map(|()| Response::Done),
            Request::SetTyping { chat_id, typing } => {
                self.presence.typing(session, chat_id, typing).await;
                Ok(Response::Done)
            }
            Request::RequestOtp { .. }
            | Request::VerifyOtp { .. }
            | Request::Refresh { .. }
            | Request::Ping => Err(ErrorBody::new(
                ErrorCode::Internal,
                "unreachable request routing",
            )),
        };
        (result, SessionChange::None)
    }

    /// After a contact or block change between `users`: presence views are evaluated again
    /// (the policy's answer may have changed); the answer is `Done` or the error.
    fn relations_changed(
        &self,
        result: Result<(), ErrorBody>,
        users: &[UserId],
    ) -> Result<Response, ErrorBody> {
        result.map(|()| {
            self.social_committed(users);
            Response::Done
        })
    }

    /// A social write concerning `users` committed: presence views here are evaluated again
    /// and, in cluster mode, every other node drops its cached facts of them and does the same.
    fn social_committed(&self, users: &[UserId]) {
        self.presence.relations_changed(users);
        if let Some(c) = self.router.cluster() {
            c.social_changed(users);
        }
    }

    /// `SendMessage`: a media message takes its media reference first (and gives it back if
    /// the send is refused); a delete for everyone of a media message drops its reference once
    /// committed.
    async fn send_message(
        &self,
        session: SessionInfo,
        chat_id: tern_protocol::ChatId,
        client_msg_id: tern_protocol::ClientMsgId,
        mut body: tern_protocol::MessageBody,
    ) -> Result<tern_protocol::Sent, ErrorBody> {
        use tern_protocol::MessageBody;
        let mut taken = None;
        let mut dropping = None;
        match &mut body {
            MessageBody::Media(m) => {
                self.media
                    .reference(session, chat_id, client_msg_id, m)
                    .await?;
                taken = Some((
                    m.media,
                    crate::media::store::MessageRef {
                        chat: chat_id,
                        device: session.device_id,
                        client_msg_id,
                    },
                ));
            }
            MessageBody::Delete { target } => {
                dropping = self.media.deleting(chat_id, *target).await;
            }
            _ => {}
        }
        let sent = self.chat.send(session, chat_id, client_msg_id, body).await;
        match (&sent, taken, dropping) {
            (Err(e), Some((media, r)), _) if e.code != ErrorCode::Internal => {
                self.media.release(media, r).await;
            }
            (Ok(_), _, Some((media, r))) => self.media.release(media, r).await,
            _ => {}
        }
        sent
    }
}

/// A login or refresh answer, and the session it authenticates.
fn logged_in(grant: Result<LoginGrant, ErrorBody>) -> (Result<Response, ErrorBody>, SessionChange) {
    match grant {
        Ok(grant) => {
            let s = SessionInfo {
                user_id: grant.user_id,
                device_id: grant.device_id,
            };
            (
                Ok(Response::LoggedIn(grant)),
                SessionChange::Authenticated(s),
            )
        }
        Err(e) => (Err(e), SessionChange::None),
    }
}
