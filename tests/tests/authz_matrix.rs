//! The authorization matrix of groups and message features (issue 9, `groups-spec.md`): every
//! chat, group and message operation (rows) asked by every kind of actor (columns), each cell
//! asserting the exact answer of the spec's table; and for every `NotFound` cell, that the
//! answer is exactly what a chat id that does not exist gets (non-members learn nothing).
//!
//! One server, every user logged in once; cells that change a group's state get a fresh group
//! with the same cast (admin, member, second member, removed member, member who left).
//! Two direct-chat columns cover blocking (issue 11): a member the peer blocked, and a member
//! who blocked the peer.
//!
//! The second table covers the social requests of issue 11 (`social-spec.md`): every
//! profile, directory, contact, block, privacy, presence and typing request (rows) asked by
//! users in every relation to a target user `T` (columns: `T` itself, contacts either way,
//! direct and group peers, a stranger, blocked either way), each cell asserting the answer.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;

use tern_sdk::protocol::{
    ChatId, ErrorCode, GroupSettings, MessageBody, Request, Response, RichText, Seq, UserId,
};
use tern_sdk::{Client, Error};
use tern_tests::group_history::{create_group, send_body, sent};
use tern_tests::{Device, TestServer};

/// Who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Actor {
    /// The group's creator.
    Admin,
    /// A member who is not an admin.
    Member,
    /// A registered user who was never in any chat.
    NonMember,
    /// A member the admin removed.
    Removed,
    /// A member who left.
    Left,
    /// A member of another group, asking with this group's id.
    Outsider,
    /// A member of a direct chat, asking about it.
    DmMember,
    /// A member of another chat, asking about the direct chat with its id.
    DmOutsider,
    /// A member of a direct chat whose peer blocked them (their messages are withheld).
    DmBlocked,
    /// A member of a direct chat who blocked the peer (their sends are refused).
    DmBlocker,
}

const ACTORS: [Actor; 10] = [
    Actor::Admin,
    Actor::Member,
    Actor::NonMember,
    Actor::Removed,
    Actor::Left,
    Actor::Outsider,
    Actor::DmMember,
    Actor::DmOutsider,
    Actor::DmBlocked,
    Actor::DmBlocker,
];

impl Actor {
    fn label(self) -> &'static str {
        match self {
            Actor::Admin => "admin",
            Actor::Member => "member",
            Actor::NonMember => "non-member",
            Actor::Removed => "removed",
            Actor::Left => "left",
            Actor::Outsider => "outsider",
            Actor::DmMember => "dm member",
            Actor::DmOutsider => "dm outsider",
            Actor::DmBlocked => "dm blocked",
            Actor::DmBlocker => "dm blocker",
        }
    }

    fn direct(self) -> bool {
        matches!(
            self,
            Actor::DmMember | Actor::DmOutsider | Actor::DmBlocked | Actor::DmBlocker
        )
    }

    fn member(self) -> bool {
        matches!(
            self,
            Actor::Admin | Actor::Member | Actor::DmMember | Actor::DmBlocked | Actor::DmBlocker
        )
    }
}

/// What is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Text,
    Reply,
    Reaction,
    EditOwn,
    EditOther,
    EditEmptyText,
    DeleteOwn,
    DeleteOther,
    DeleteForMe,
    GetMessages,
    Ack,
    MarkRead,
    GetReceipts,
    MessageReceiptsOwn,
    MessageReceiptsOther,
    GetGroupInfo,
    ListChats,
    OpenDirectChat,
    ReactionToSeq0,
    SendDeletedBody,
    // Rows below change the group: each cell gets a fresh one.
    TextAnnouncementOnly,
    ReactionAnnouncementOnly,
    AddMembers,
    AddMembersWhenMembersCanAdd,
    RemoveMember,
    SetAdmin,
    DemoteOnlyAdmin,
    EditGroupInfo,
    EditGroupInfoWhenLocked,
    SetGroupSettings,
    LeaveGroup,
}

const OPS: [Op; 31] = [
    Op::Text,
    Op::Reply,
    Op::Reaction,
    Op::EditOwn,
    Op::EditOther,
    Op::EditEmptyText,
    Op::DeleteOwn,
    Op::DeleteOther,
    Op::DeleteForMe,
    Op::GetMessages,
    Op::Ack,
    Op::MarkRead,
    Op::GetReceipts,
    Op::MessageReceiptsOwn,
    Op::MessageReceiptsOther,
    Op::GetGroupInfo,
    Op::ListChats,
    Op::OpenDirectChat,
    Op::ReactionToSeq0,
    Op::SendDeletedBody,
    Op::TextAnnouncementOnly,
    Op::ReactionAnnouncementOnly,
    Op::AddMembers,
    Op::AddMembersWhenMembersCanAdd,
    Op::RemoveMember,
    Op::SetAdmin,
    Op::DemoteOnlyAdmin,
    Op::EditGroupInfo,
    Op::EditGroupInfoWhenLocked,
    Op::SetGroupSettings,
    Op::LeaveGroup,
];

impl Op {
    fn label(self) -> String {
        format!("{self:?}")
    }

    /// The settings a fresh group for this row starts with, if the row needs one.
    fn fresh(self) -> Option<GroupSettings> {
        let d = GroupSettings::default();
        match self {
            Op::TextAnnouncementOnly | Op::ReactionAnnouncementOnly => Some(GroupSettings {
                announcement_only: true,
                ..d
            }),
            Op::AddMembersWhenMembersCanAdd => Some(GroupSettings {
                members_can_add: true,
                ..d
            }),
            Op::EditGroupInfoWhenLocked => Some(GroupSettings {
                members_can_edit_info: false,
                ..d
            }),
            Op::AddMembers
            | Op::RemoveMember
            | Op::SetAdmin
            | Op::DemoteOnlyAdmin
            | Op::EditGroupInfo
            | Op::SetGroupSettings
            | Op::LeaveGroup => Some(d),
            _ => None,
        }
    }
}

/// The answer the spec prescribes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    /// Success with this `Response` variant.
    Ok(&'static str),
    /// This code; the message contains the text when given.
    Err(ErrorCode, Option<&'static str>),
    /// `NotFound` "no such chat", identical to the answer for a chat that does not exist.
    NotFound,
    /// `ListChats` succeeds and lists the chat (or not).
    Listed(bool),
    /// Not meaningful for this actor.
    Na,
}

impl Want {
    fn short(&self) -> String {
        match self {
            Want::Ok(v) => (*v).to_owned(),
            Want::Err(c, _) => format!("{c:?}"),
            Want::NotFound => "NotFound".into(),
            Want::Listed(true) => "listed".into(),
            Want::Listed(false) => "unlisted".into(),
            Want::Na => "-".into(),
        }
    }
}

/// The spec's table.
fn want(op: Op, a: Actor) -> Want {
    let forbidden = Want::Err(ErrorCode::Forbidden, None);
    let invalid = Want::Err(ErrorCode::InvalidArgument, None);
    let not_group = Want::Err(ErrorCode::InvalidArgument, Some("not a group"));
    let dm = a.direct();
    let admin = a == Actor::Admin;
    if !a.member() {
        return match op {
            Op::ListChats => Want::Listed(false),
            Op::OpenDirectChat => Want::Na,
            // Group-only settings variants do not exist in a direct chat.
            Op::TextAnnouncementOnly
            | Op::ReactionAnnouncementOnly
            | Op::AddMembersWhenMembersCanAdd
            | Op::EditGroupInfoWhenLocked
                if dm =>
            {
                Want::Na
            }
            _ => Want::NotFound,
        };
    }
    let by_role = |admin_gets: Want, member_gets: Want| {
        if dm {
            not_group.clone()
        } else if admin {
            admin_gets
        } else {
            member_gets
        }
    };
    // Blocking (social-spec "Blocking and messages"): the blocker's sends into the direct
    // chat are refused once the body itself passed its checks; the blocked member's are
    // answered `Sent` as usual (and withheld from the blocker, see tests/social.rs).
    let unblock_first = Want::Err(ErrorCode::Forbidden, Some("unblock this user"));
    match op {
        Op::Text | Op::Reply | Op::Reaction | Op::EditOwn | Op::DeleteOwn
            if a == Actor::DmBlocker =>
        {
            unblock_first
        }
        Op::Text | Op::Reply | Op::Reaction | Op::EditOwn | Op::DeleteOwn => Want::Ok("Sent"),
        Op::EditOther | Op::MessageReceiptsOther => forbidden,
        Op::EditEmptyText | Op::SendDeletedBody => invalid,
        Op::ReactionToSeq0 => Want::Err(ErrorCode::InvalidArgument, Some("no such message")),
        // No admins in a direct chat: deleting the peer's message is refused.
        Op::DeleteOther if admin => Want::Ok("Sent"),
        Op::DeleteOther => forbidden,
        Op::DeleteForMe | Op::Ack | Op::MarkRead => Want::Ok("Done"),
        Op::GetMessages => Want::Ok("Messages"),
        Op::GetReceipts => Want::Ok("Receipts"),
        Op::MessageReceiptsOwn => Want::Ok("MessageReceipts"),
        Op::GetGroupInfo => by_role(Want::Ok("GroupInfo"), Want::Ok("GroupInfo")),
        Op::ListChats => Want::Listed(true),
        Op::OpenDirectChat if dm => Want::Ok("Chat"),
        Op::OpenDirectChat => Want::Na,
        Op::TextAnnouncementOnly | Op::ReactionAnnouncementOnly if dm => Want::Na,
        Op::TextAnnouncementOnly | Op::ReactionAnnouncementOnly => {
            by_role(Want::Ok("Sent"), forbidden)
        }
        Op::AddMembersWhenMembersCanAdd | Op::EditGroupInfoWhenLocked if dm => Want::Na,
        Op::AddMembersWhenMembersCanAdd => by_role(Want::Ok("Sent"), Want::Ok("Sent")),
        Op::EditGroupInfoWhenLocked => by_role(Want::Ok("Sent"), forbidden),
        Op::AddMembers | Op::RemoveMember | Op::SetAdmin | Op::SetGroupSettings => {
            by_role(Want::Ok("Sent"), forbidden)
        }
        Op::DemoteOnlyAdmin => by_role(
            Want::Err(ErrorCode::InvalidArgument, Some("a group needs an admin")),
            // Whether a member hears Forbidden or InvalidArgument is not specified.
            Want::Na,
        ),
        Op::EditGroupInfo | Op::LeaveGroup => by_role(Want::Ok("Sent"), Want::Ok("Sent")),
    }
}

/// A group with the full cast: admin, member, member2, removed (sent a message, then was
/// removed by the admin), left (sent a message, then left).
#[derive(Debug, Clone, Copy)]
struct Group {
    chat: ChatId,
    seq_admin: Seq,
    seq_member: Seq,
    seq_removed: Seq,
    seq_left: Seq,
}

struct Fixture {
    admin: Device,
    member: Device,
    member2: Device,
    nonmember: Device,
    removed: Device,
    left: Device,
    outsider: Device,
    dm_peer: Device,
    spare: Device,
    dm_blocked: Device,
    dm_blocker: Device,
    /// The direct chat of `dm_blocked` and `dm_blocker` (who blocked the other).
    bdm: ChatId,
    bdm_seq_blocked: Seq,
    bdm_seq_blocker: Seq,
    /// The direct chat of `member` and `dm_peer`.
    dm: ChatId,
    dm_seq_member: Seq,
    dm_seq_peer: Seq,
    /// A chat id that does not exist.
    ghost: ChatId,
    cmid: std::sync::atomic::AtomicU64,
}

impl Fixture {
    fn uid(d: &Device) -> UserId {
        d.session.user_id
    }

    fn client(&self, a: Actor) -> &Client {
        match a {
            Actor::Admin => &self.admin.client,
            Actor::Member | Actor::DmMember => &self.member.client,
            Actor::NonMember => &self.nonmember.client,
            Actor::Removed => &self.removed.client,
            Actor::Left => &self.left.client,
            Actor::Outsider | Actor::DmOutsider => &self.outsider.client,
            Actor::DmBlocked => &self.dm_blocked.client,
            Actor::DmBlocker => &self.dm_blocker.client,
        }
    }

    /// A direct actor's chat, own message, the other member's message, and the other member.
    fn direct(&self, a: Actor) -> (ChatId, Seq, Seq, UserId) {
        match a {
            Actor::DmBlocked => (
                self.bdm,
                self.bdm_seq_blocked,
                self.bdm_seq_blocker,
                Self::uid(&self.dm_blocker),
            ),
            Actor::DmBlocker => (
                self.bdm,
                self.bdm_seq_blocker,
                self.bdm_seq_blocked,
                Self::uid(&self.dm_blocked),
            ),
            _ => (
                self.dm,
                self.dm_seq_member,
                self.dm_seq_peer,
                Self::uid(&self.dm_peer),
            ),
        }
    }

    fn next_cmid(&self) -> u64 {
        self.cmid.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    async fn text(&self, c: &Client, chat: ChatId, what: &str) -> Seq {
        let body = MessageBody::Text(what.into());
        sent(what, send_body(c, chat, self.next_cmid(), body).await).seq
    }

    async fn group(&self, settings: GroupSettings) -> Group {
        let members = [
            Self::uid(&self.member),
            Self::uid(&self.member2),
            Self::uid(&self.removed),
            Self::uid(&self.left),
        ];
        let chat = create_group(&self.admin.client, "matrix", &members).await;
        let seq_removed = self.text(&self.removed.client, chat, "by removed").await;
        let seq_left = self.text(&self.left.client, chat, "by left").await;
        let seq_admin = self.text(&self.admin.client, chat, "by admin").await;
        let seq_member = self.text(&self.member.client, chat, "by member").await;
        let r = self
            .admin
            .client
            .request(Request::RemoveMember {
                chat_id: chat,
                user_id: Self::uid(&self.removed),
            })
            .await;
        sent("fixture RemoveMember", r);
        let r = self
            .left
            .client
            .request(Request::LeaveGroup { chat_id: chat })
            .await;
        sent("fixture LeaveGroup", r);
        if settings != GroupSettings::default() {
            let r = self
                .admin
                .client
                .request(Request::SetGroupSettings {
                    chat_id: chat,
                    settings,
                })
                .await;
            sent("fixture SetGroupSettings", r);
        }
        Group {
            chat,
            seq_admin,
            seq_member,
            seq_removed,
            seq_left,
        }
    }

    /// The request of a cell (after any set-up it needs, such as a fresh message to delete).
    async fn request(&self, op: Op, a: Actor, g: &Group) -> Request {
        let dm = a.direct();
        let (dm_chat, dm_own, dm_other, dm_peer) = self.direct(a);
        let chat = if dm { dm_chat } else { g.chat };
        // A message of the actor's own (for non-members: some message of the chat).
        let own = match a {
            _ if dm => dm_own,
            Actor::Admin => g.seq_admin,
            Actor::Member => g.seq_member,
            Actor::Removed => g.seq_removed,
            Actor::Left => g.seq_left,
            _ => g.seq_admin,
        };
        // Someone else's message.
        let other = match a {
            _ if dm => dm_other,
            Actor::Admin => g.seq_member,
            _ => g.seq_admin,
        };
        let mention = if dm { dm_peer } else { Self::uid(&self.admin) };
        let group_target = if dm {
            dm_peer
        } else {
            Self::uid(&self.member2)
        };
        let send = |body| Request::SendMessage {
            chat_id: chat,
            client_msg_id: self.next_cmid(),
            body,
        };
        match op {
            Op::Text | Op::TextAnnouncementOnly => send(MessageBody::Text("cell".into())),
            Op::Reply => send(MessageBody::Rich(RichText {
                text: "a reply".into(),
                reply_to: Some(other),
                mentions: vec![mention],
            })),
            Op::Reaction | Op::ReactionAnnouncementOnly => send(MessageBody::Reaction {
                target: other,
                emoji: Some("👍".into()),
            }),
            Op::ReactionToSeq0 => send(MessageBody::Reaction {
                target: 0,
                emoji: Some("👍".into()),
            }),
            Op::EditOwn => send(MessageBody::Edit {
                target: own,
                text: "edited".into(),
            }),
            Op::EditOther => send(MessageBody::Edit {
                target: other,
                text: "edited".into(),
            }),
            Op::EditEmptyText => send(MessageBody::Edit {
                target: own,
                text: String::new(),
            }),
            Op::DeleteOwn => {
                // The blocker cannot send a fresh one: it deletes its message from before.
                let target = if a.member() && a != Actor::DmBlocker {
                    self.text(self.client(a), chat, "to delete").await
                } else {
                    own
                };
                send(MessageBody::Delete { target })
            }
            Op::DeleteOther => {
                let target = if a == Actor::Admin {
                    self.text(&self.member.client, chat, "member's, to delete")
                        .await
                } else {
                    other
                };
                send(MessageBody::Delete { target })
            }
            Op::SendDeletedBody => send(MessageBody::Deleted),
            Op::DeleteForMe => Request::DeleteForMe {
                chat_id: chat,
                seqs: vec![other],
            },
            Op::GetMessages => Request::GetMessages {
                chat_id: chat,
                from_seq: 1,
                limit: 50,
            },
            Op::Ack => Request::Ack {
                chat_id: chat,
                upto_seq: other,
            },
            Op::MarkRead => Request::MarkRead {
                chat_id: chat,
                upto_seq: other,
            },
            Op::GetReceipts => Request::GetReceipts { chat_id: chat },
            Op::MessageReceiptsOwn => Request::GetMessageReceipts {
                chat_id: chat,
                seq: own,
            },
            Op::MessageReceiptsOther => Request::GetMessageReceipts {
                chat_id: chat,
                seq: other,
            },
            Op::GetGroupInfo => Request::GetGroupInfo { chat_id: chat },
            Op::ListChats => Request::ListChats,
            Op::OpenDirectChat => Request::OpenDirectChat { peer: dm_peer },
            Op::AddMembers | Op::AddMembersWhenMembersCanAdd => Request::AddMembers {
                chat_id: chat,
                members: vec![Self::uid(&self.spare)],
            },
            Op::RemoveMember => Request::RemoveMember {
                chat_id: chat,
                user_id: group_target,
            },
            Op::SetAdmin => Request::SetAdmin {
                chat_id: chat,
                user_id: group_target,
                admin: true,
            },
            Op::DemoteOnlyAdmin => Request::SetAdmin {
                chat_id: chat,
                user_id: Self::uid(&self.admin),
                admin: false,
            },
            Op::EditGroupInfo | Op::EditGroupInfoWhenLocked => Request::EditGroupInfo {
                chat_id: chat,
                title: Some("renamed".into()),
                description: None,
            },
            Op::SetGroupSettings => Request::SetGroupSettings {
                chat_id: chat,
                settings: GroupSettings {
                    announcement_only: true,
                    ..GroupSettings::default()
                },
            },
            Op::LeaveGroup => Request::LeaveGroup { chat_id: chat },
        }
    }
}

/// The same request about another chat.
fn retarget(r: &Request, to: ChatId) -> Request {
    let mut r = r.clone();
    match &mut r {
        Request::SendMessage { chat_id, .. }
        | Request::Ack { chat_id, .. }
        | Request::MarkRead { chat_id, .. }
        | Request::GetMessages { chat_id, .. }
        | Request::GetReceipts { chat_id }
        | Request::AddMembers { chat_id, .. }
        | Request::RemoveMember { chat_id, .. }
        | Request::LeaveGroup { chat_id }
        | Request::SetAdmin { chat_id, .. }
        | Request::EditGroupInfo { chat_id, .. }
        | Request::SetGroupSettings { chat_id, .. }
        | Request::GetGroupInfo { chat_id }
        | Request::GetMessageReceipts { chat_id, .. }
        | Request::DeleteForMe { chat_id, .. } => *chat_id = to,
        _ => {}
    }
    r
}

fn variant(r: &Response) -> String {
    let s = format!("{r:?}");
    s.split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn describe(r: &Result<Response, Error>) -> String {
    match r {
        Ok(resp) => format!("Ok({})", variant(resp)),
        Err(Error::Server(b)) => format!("{:?} {:?}", b.code, b.message),
        Err(e) => format!("client error {e}"),
    }
}

/// `None` when the answer is what the spec says, else why not.
fn judge(
    want: &Want,
    chat: ChatId,
    got: &Result<Response, Error>,
    ghost: Option<&Result<Response, Error>>,
) -> Option<String> {
    let bad = |why: &str| {
        Some(format!(
            "want {}, got {} {why}",
            want.short(),
            describe(got)
        ))
    };
    match want {
        Want::Na => None,
        Want::Ok(v) => match got {
            Ok(Response::Chat(c)) if *v == "Chat" && c.chat_id != chat => {
                bad(&format!("(chat {} instead of {chat})", c.chat_id))
            }
            Ok(r) if variant(r) == *v => None,
            _ => bad(""),
        },
        Want::Err(code, text) => match got {
            Err(Error::Server(b))
                if b.code == *code && text.is_none_or(|t| b.message.contains(t)) =>
            {
                None
            }
            _ => bad(&text
                .map(|t| format!("(message should say {t:?})"))
                .unwrap_or_default()),
        },
        Want::Listed(listed) => match got {
            Ok(Response::Chats(chats)) => {
                let is = chats.iter().any(|c| c.chat_id == chat);
                (is != *listed).then(|| {
                    format!(
                        "want {}, got {}",
                        want.short(),
                        if is { "listed" } else { "unlisted" }
                    )
                })
            }
            _ => bad(""),
        },
        Want::NotFound => {
            let Err(Error::Server(b)) = got else {
                return bad("");
            };
            if b.code != ErrorCode::NotFound || b.message != "no such chat" {
                return bad("(must be NotFound \"no such chat\")");
            }
            match ghost {
                Some(Err(Error::Server(g))) if g == b => None,
                other => Some(format!(
                    "answer {} differs from the answer for a chat that does not exist: {}",
                    describe(got),
                    other.map(describe).unwrap_or_default()
                )),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_actor_gets_exactly_the_answer_of_the_spec_table() {
    let server = TestServer::start().await;
    let login = |n: u32| {
        let server = &server;
        async move { server.login(&format!("+1555090{n:04}")).await }
    };
    let (admin, member, member2, nonmember, removed) =
        tokio::join!(login(1), login(2), login(3), login(4), login(5));
    let (left, outsider, dm_peer, spare) = tokio::join!(login(6), login(7), login(8), login(9));
    let (dm_blocked, dm_blocker) = tokio::join!(login(10), login(11));
    let bdm = dm_blocked
        .client
        .open_direct_chat(dm_blocker.session.user_id)
        .await
        .unwrap()
        .chat_id;
    let dm = member
        .client
        .open_direct_chat(dm_peer.session.user_id)
        .await
        .unwrap()
        .chat_id;
    // The outsider has a group of their own.
    create_group(&outsider.client, "elsewhere", &[dm_peer.session.user_id]).await;
    let mut fx = Fixture {
        admin,
        member,
        member2,
        nonmember,
        removed,
        left,
        outsider,
        dm_peer,
        spare,
        dm_blocked,
        dm_blocker,
        bdm,
        bdm_seq_blocked: 0,
        bdm_seq_blocker: 0,
        dm,
        dm_seq_member: 0,
        dm_seq_peer: 0,
        ghost: ChatId(0x7fff_ffff_ffff_ff01),
        cmid: std::sync::atomic::AtomicU64::new(1),
    };
    fx.dm_seq_member = fx.text(&fx.member.client, dm, "dm by member").await;
    fx.dm_seq_peer = fx.text(&fx.dm_peer.client, dm, "dm by peer").await;
    fx.bdm_seq_blocked = fx.text(&fx.dm_blocked.client, bdm, "by blocked").await;
    fx.bdm_seq_blocker = fx.text(&fx.dm_blocker.client, bdm, "by blocker").await;
    fx.dm_blocker
        .client
        .block(fx.dm_blocked.session.user_id)
        .await
        .unwrap();
    let shared = fx.group(GroupSettings::default()).await;

    let mut cells: Vec<Vec<(Want, Option<String>)>> = Vec::new();
    let mut failures = Vec::new();
    for op in OPS {
        let mut row = Vec::new();
        for a in ACTORS {
            let w = want(op, a);
            if w == Want::Na {
                row.push((w, None));
                continue;
            }
            let g = match op.fresh() {
                Some(settings) if !a.direct() => fx.group(settings).await,
                _ => shared,
            };
            let chat = if a.direct() { fx.direct(a).0 } else { g.chat };
            let req = fx.request(op, a, &g).await;
            let got = fx.client(a).request(req.clone()).await;
            let ghost = if w == Want::NotFound {
                Some(fx.client(a).request(retarget(&req, fx.ghost)).await)
            } else {
                None
            };
            let verdict = judge(&w, chat, &got, ghost.as_ref());
            if let Some(why) = &verdict {
                failures.push(format!("{} / {}: {req:?}: {why}", op.label(), a.label()));
            }
            row.push((w, verdict));
        }
        cells.push(row);
    }

    if !failures.is_empty() {
        let mut table = String::new();
        let _ = write!(table, "{:<28}", "operation \\ actor");
        for a in ACTORS {
            let _ = write!(table, "| {:<17}", a.label());
        }
        table.push('\n');
        for (op, row) in OPS.iter().zip(&cells) {
            let _ = write!(table, "{:<28}", op.label());
            for (w, verdict) in row {
                let mark = if verdict.is_some() { "✗ " } else { "" };
                let _ = write!(table, "| {:<17}", format!("{mark}{}", w.short()));
            }
            table.push('\n');
        }
        panic!(
            "{} of the matrix's cells broke (✗; the cell shows the answer the spec wants):\n\
             {table}\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

// ---- The social requests (issue 11, social-spec.md) ----

/// How the asking user stands to the target user `T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rel {
    /// `T` itself.
    Oneself,
    /// Has `T` as a contact.
    Contact,
    /// `T` has them as a contact.
    ContactOf,
    /// Shares a direct chat with `T`.
    DmPeer,
    /// Shares a group with `T`.
    GroupPeer,
    /// No relation.
    Stranger,
    /// `T` blocked them.
    BlockedByT,
    /// They blocked `T`.
    BlocksT,
}

const RELS: [Rel; 8] = [
    Rel::Oneself,
    Rel::Contact,
    Rel::ContactOf,
    Rel::DmPeer,
    Rel::GroupPeer,
    Rel::Stranger,
    Rel::BlockedByT,
    Rel::BlocksT,
];

/// A social request. Rows that change the relation to `T` come last, so every earlier row of
/// every column sees the relation its column names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SocialOp {
    GetProfileOfT,
    GetProfileGhost,
    LookupT,
    LookupUnknownName,
    LookupUnregisteredIdentifier,
    ListContacts,
    ListBlocked,
    GetPrivacy,
    SetPrivacy,
    SetProfile,
    WatchPresenceT,
    SetForeground,
    SetTypingInTsGroup,
    SetUsernameInvalid,
    SetUsernameTaken,
    SetUsername,
    AddContactGhost,
    BlockGhost,
    AddContactT,
    RemoveContactT,
    BlockT,
    UnblockT,
}

const SOCIAL_OPS: [SocialOp; 22] = [
    SocialOp::GetProfileOfT,
    SocialOp::GetProfileGhost,
    SocialOp::LookupT,
    SocialOp::LookupUnknownName,
    SocialOp::LookupUnregisteredIdentifier,
    SocialOp::ListContacts,
    SocialOp::ListBlocked,
    SocialOp::GetPrivacy,
    SocialOp::SetPrivacy,
    SocialOp::SetProfile,
    SocialOp::WatchPresenceT,
    SocialOp::SetForeground,
    SocialOp::SetTypingInTsGroup,
    SocialOp::SetUsernameInvalid,
    SocialOp::SetUsernameTaken,
    SocialOp::SetUsername,
    SocialOp::AddContactGhost,
    SocialOp::BlockGhost,
    SocialOp::AddContactT,
    SocialOp::RemoveContactT,
    SocialOp::BlockT,
    SocialOp::UnblockT,
];

/// What a social cell must answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SocialWant {
    /// Success with this `Response` variant.
    Ok(&'static str),
    /// `Profile` (or `Lookup(Some)`) of `T`, with about and photo shown or hidden.
    ProfileOfT { hidden: bool },
    /// `Lookup(None)`.
    Miss,
    /// This code; the message contains the text when given.
    Err(ErrorCode, Option<&'static str>),
}

/// The spec's table for the social requests.
fn social_want(op: SocialOp, r: Rel) -> SocialWant {
    use SocialWant::{Err, Miss, Ok, ProfileOfT};
    let me = r == Rel::Oneself;
    let blocked = matches!(r, Rel::BlockedByT | Rel::BlocksT);
    let invalid = Err(ErrorCode::InvalidArgument, None);
    let no_such_user = Err(ErrorCode::NotFound, Some("no such user"));
    match op {
        // T's photo and about are for everyone (the default), so only a block hides them.
        SocialOp::GetProfileOfT | SocialOp::LookupT => ProfileOfT { hidden: blocked },
        SocialOp::GetProfileGhost | SocialOp::AddContactGhost | SocialOp::BlockGhost => {
            no_such_user
        }
        SocialOp::LookupUnknownName | SocialOp::LookupUnregisteredIdentifier => Miss,
        SocialOp::ListContacts => Ok("Profiles"),
        SocialOp::ListBlocked => Ok("Users"),
        SocialOp::GetPrivacy | SocialOp::SetPrivacy => Ok("Privacy"),
        SocialOp::SetProfile | SocialOp::SetUsername => Ok("Profile"),
        SocialOp::WatchPresenceT => Ok("Presence"),
        SocialOp::SetForeground | SocialOp::SetTypingInTsGroup => Ok("Done"),
        SocialOp::SetUsernameInvalid => invalid,
        // T setting its own name again is free and fine.
        SocialOp::SetUsernameTaken if me => Ok("Profile"),
        SocialOp::SetUsernameTaken => Err(ErrorCode::InvalidArgument, Some("username is taken")),
        SocialOp::AddContactT | SocialOp::BlockT if me => invalid,
        SocialOp::AddContactT | SocialOp::RemoveContactT | SocialOp::BlockT => Ok("Done"),
        SocialOp::UnblockT => Ok("Done"),
    }
}

const T_NAME: &str = "matrix_target";

struct SocialFixture {
    target: Device,
    /// One user per relation but `Oneself`, in [`RELS`] order.
    others: Vec<Device>,
    group: ChatId,
}

impl SocialFixture {
    fn t(&self) -> UserId {
        self.target.session.user_id
    }

    fn device(&self, r: Rel) -> &Device {
        match RELS.iter().position(|x| *x == r) {
            Some(0) | None => &self.target,
            Some(i) => &self.others[i - 1],
        }
    }

    fn request(&self, op: SocialOp, r: Rel) -> Request {
        use tern_sdk::protocol::{PrivacySettings, ProfileEdit, UserQuery};
        let ghost = UserId(0x1f_ffff_ffff_ff07);
        let me = self.device(r).session.user_id;
        match op {
            SocialOp::GetProfileOfT => Request::GetProfile { user_id: self.t() },
            SocialOp::GetProfileGhost => Request::GetProfile { user_id: ghost },
            SocialOp::LookupT => Request::LookupUser(UserQuery::Username(T_NAME.into())),
            SocialOp::LookupUnknownName => {
                Request::LookupUser(UserQuery::Username("nobody_here".into()))
            }
            SocialOp::LookupUnregisteredIdentifier => {
                Request::LookupUser(UserQuery::Identifier("+15550999999".into()))
            }
            SocialOp::ListContacts => Request::ListContacts,
            SocialOp::ListBlocked => Request::ListBlocked,
            SocialOp::GetPrivacy => Request::GetPrivacy,
            SocialOp::SetPrivacy => Request::SetPrivacy(PrivacySettings::default()),
            SocialOp::SetProfile => Request::SetProfile(ProfileEdit {
                display_name: Some(format!("{r:?}")),
                ..ProfileEdit::default()
            }),
            SocialOp::WatchPresenceT => Request::WatchPresence {
                users: vec![self.t()],
            },
            SocialOp::SetForeground => Request::SetForeground { foreground: true },
            SocialOp::SetTypingInTsGroup => Request::SetTyping {
                chat_id: self.group,
                typing: true,
            },
            SocialOp::SetUsernameInvalid => Request::SetUsername {
                username: Some("1nvalid".into()),
            },
            SocialOp::SetUsernameTaken => Request::SetUsername {
                username: Some(T_NAME.to_uppercase()),
            },
            SocialOp::SetUsername => Request::SetUsername {
                username: Some(format!("user_{}", me.0)),
            },
            SocialOp::AddContactGhost => Request::AddContact { user_id: ghost },
            SocialOp::BlockGhost => Request::Block { user_id: ghost },
            SocialOp::AddContactT => Request::AddContact { user_id: self.t() },
            SocialOp::RemoveContactT => Request::RemoveContact { user_id: self.t() },
            SocialOp::BlockT => Request::Block { user_id: self.t() },
            SocialOp::UnblockT => Request::Unblock { user_id: self.t() },
        }
    }
}

/// `None` when a social answer is what the table says, else why not.
fn social_judge(want: &SocialWant, t: UserId, got: &Result<Response, Error>) -> Option<String> {
    let profile_ok = |p: &tern_sdk::protocol::Profile, hidden: bool| {
        p.user_id == t
            && p.username.as_deref() == Some(T_NAME)
            && p.display_name == "Target"
            && p.about.is_none() == hidden
            && p.avatar.is_none() == hidden
    };
    let ok = match (want, got) {
        (SocialWant::Ok(v), Ok(r)) => variant(r) == *v,
        (
            SocialWant::ProfileOfT { hidden },
            Ok(Response::Profile(p) | Response::Lookup(Some(p))),
        ) => profile_ok(p, *hidden),
        (SocialWant::Miss, Ok(Response::Lookup(None))) => true,
        (SocialWant::Err(code, text), Err(Error::Server(b))) => {
            b.code == *code && text.is_none_or(|t| b.message.contains(t))
        }
        _ => false,
    };
    (!ok).then(|| format!("want {want:?}, got {}", describe_full(got)))
}

fn describe_full(r: &Result<Response, Error>) -> String {
    match r {
        Ok(Response::Profile(p) | Response::Lookup(Some(p))) => format!("{p:?}"),
        other => describe(other),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_social_request_answers_as_the_spec_says_for_every_relation() {
    use tern_sdk::protocol::{MediaRef, ProfileEdit};
    let server = TestServer::start().await;
    let target = server.login("+15550980000").await;
    let mut others = Vec::new();
    for i in 1..RELS.len() {
        others.push(server.login(&format!("+1555098{i:04}")).await);
    }
    let t = target.session.user_id;
    let tc = &target.client;
    tc.set_profile(ProfileEdit {
        display_name: Some("Target".into()),
        about: Some("about".into()),
        avatar: Some(Some(MediaRef([3; 32]))),
    })
    .await
    .unwrap();
    tc.set_username(Some(T_NAME)).await.unwrap();
    let uid_of = |r: Rel| {
        others[RELS.iter().position(|x| *x == r).unwrap() - 1]
            .session
            .user_id
    };
    let dev_of = |r: Rel| &others[RELS.iter().position(|x| *x == r).unwrap() - 1].client;
    dev_of(Rel::Contact).add_contact(t).await.unwrap();
    tc.add_contact(uid_of(Rel::ContactOf)).await.unwrap();
    tc.open_direct_chat(uid_of(Rel::DmPeer)).await.unwrap();
    let group = create_group(tc, "social", &[uid_of(Rel::GroupPeer)]).await;
    tc.block(uid_of(Rel::BlockedByT)).await.unwrap();
    dev_of(Rel::BlocksT).block(t).await.unwrap();
    let fx = SocialFixture {
        target,
        others,
        group,
    };

    let mut failures = Vec::new();
    let mut table = String::new();
    let _ = write!(table, "{:<30}", "request \\ relation to T");
    for r in RELS {
        let _ = write!(table, "| {:<12}", format!("{r:?}"));
    }
    table.push('\n');
    for op in SOCIAL_OPS {
        let _ = write!(table, "{:<30}", format!("{op:?}"));
        for r in RELS {
            let want = social_want(op, r);
            let req = fx.request(op, r);
            let got = fx.device(r).client.request(req.clone()).await;
            let verdict = social_judge(&want, fx.t(), &got);
            let mark = if verdict.is_some() { "✗" } else { "✓" };
            let _ = write!(table, "| {mark:<12}");
            if let Some(why) = verdict {
                failures.push(format!("{op:?} / {r:?}: {req:?}: {why}"));
            }
        }
        table.push('\n');
    }
    assert!(
        failures.is_empty(),
        "{} social cells broke:\n{table}\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Who asks about a media object `M` that the uploader sent into a group `G` (issue 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MediaActor {
    /// Uploaded `M` (and sent it to `G`).
    Uploader,
    /// A member of `G`.
    GroupMember,
    /// Was in `G` when `M` was sent, then removed.
    Removed,
    /// Was in `G` when `M` was sent, then left.
    Left,
    /// Has a direct chat with the uploader, where `M` was never sent.
    DmPeer,
    /// A member of a direct chat into which a group member forwarded `M`.
    ForwardedTo,
    /// No chat with anyone.
    Stranger,
}

/// What a media cell does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MediaOp {
    /// Download the original.
    Original,
    /// Download the server's thumbnail.
    Thumbnail,
    /// Send `M` into a chat of the actor's own (forward).
    Forward,
}

/// The table: readers are the uploader and the current members of a chat with a message that
/// references `M`; everyone else gets `NotFound` exactly as for an id that does not exist.
fn media_allowed(a: MediaActor) -> bool {
    matches!(
        a,
        MediaActor::Uploader | MediaActor::GroupMember | MediaActor::ForwardedTo
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_actor_gets_the_media_answer_of_the_table() {
    use tern_sdk::protocol::{MediaKind, MediaRef, MediaVariant};
    use tern_sdk::{MediaSource, UploadSpec};
    let server = TestServer::start().await;
    let up = server.login("+15558000001").await;
    let member = server.login("+15558000002").await;
    let removed = server.login("+15558000003").await;
    let left = server.login("+15558000004").await;
    let dm_peer = server.login("+15558000005").await;
    let forwarded = server.login("+15558000006").await;
    let stranger = server.login("+15558000007").await;
    // Not an actor: every forward goes into a direct chat with this user, so a permitted
    // forward grants nobody in the table anything.
    let sink = server.login("+15558000008").await;
    let uid = |d: &Device| d.session.user_id;
    let group = create_group(
        &up.client,
        "media",
        &[uid(&member), uid(&removed), uid(&left)],
    )
    .await;
    // A 64×48 PNG, so the thumbnail column has something to read.
    let png = {
        let img = image_png();
        bytes::Bytes::from(img)
    };
    let spec = UploadSpec {
        kind: MediaKind::Image,
        mime: "image/png".into(),
        encrypted: false,
        declared: None,
    };
    let info = up
        .client
        .upload(MediaSource::Bytes(png), spec, |_, _| {})
        .await
        .unwrap()
        .info;
    up.client.send_media(group, &info, None).await.unwrap();
    up.client.remove_member(group, uid(&removed)).await.unwrap();
    left.client.leave_group(group).await.unwrap();
    up.client.open_direct_chat(uid(&dm_peer)).await.unwrap();
    let fwd_chat = member
        .client
        .open_direct_chat(uid(&forwarded))
        .await
        .unwrap()
        .chat_id;
    member
        .client
        .send_media(fwd_chat, &info, None)
        .await
        .unwrap();

    // What a made-up id gets: every refusal must be exactly this.
    let missing = match stranger
        .client
        .download(MediaRef([0xee; 32]), MediaVariant::Original, 1 << 20)
        .await
    {
        Err(Error::Server(b)) => b,
        other => panic!("a made-up id: {other:?}"),
    };
    assert_eq!(missing.code, ErrorCode::NotFound);

    let cast = [
        (MediaActor::Uploader, &up),
        (MediaActor::GroupMember, &member),
        (MediaActor::Removed, &removed),
        (MediaActor::Left, &left),
        (MediaActor::DmPeer, &dm_peer),
        (MediaActor::ForwardedTo, &forwarded),
        (MediaActor::Stranger, &stranger),
    ];
    let mut failures = String::new();
    for (actor, device) in cast {
        // A chat of the actor's own to forward into.
        let own_chat = device
            .client
            .open_direct_chat(uid(&sink))
            .await
            .map(|c| c.chat_id);
        for op in [MediaOp::Original, MediaOp::Thumbnail, MediaOp::Forward] {
            let got: Result<(), Error> = match op {
                MediaOp::Original | MediaOp::Thumbnail => {
                    let variant = if op == MediaOp::Original {
                        MediaVariant::Original
                    } else {
                        MediaVariant::Thumbnail
                    };
                    device
                        .client
                        .download(info.media, variant, 1 << 24)
                        .await
                        .map(|_| ())
                }
                MediaOp::Forward => match &own_chat {
                    Ok(chat) => device
                        .client
                        .send_media(*chat, &info, None)
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e.clone()),
                },
            };
            let allowed = media_allowed(actor);
            let verdict = match (&got, allowed) {
                (Ok(()), true) => None,
                (Err(Error::Server(b)), false)
                    if b.code == missing.code && b.message == missing.message =>
                {
                    None
                }
                (other, _) => Some(format!(
                    "{actor:?} {op:?}: allowed={allowed}, got {other:?}\n"
                )),
            };
            if let Some(v) = verdict {
                failures.push_str(&v);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "media cells off the table:\n{failures}"
    );
}

fn image_png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8, y as u8, 9]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}
