//! `tern group ...`: create a group, change its members, admins, title, description and
//! settings, show it. Every change is a system message in the chat; the command prints its seq
//! (`group_changed`).

use tern_sdk::protocol::limits::{MAX_GROUP_DESCRIPTION_LEN, MAX_GROUP_TITLE_LEN};
use tern_sdk::protocol::{ChatId, GroupChange, GroupSettings, Sent, UserId};

use super::Ctx;
use super::chat::check_len;
use crate::args::GroupCommand;
use crate::connection::Connection;
use crate::failure::Failure;
use crate::output::Record;

/// Runs one `group` subcommand.
pub async fn run(ctx: &mut Ctx, command: GroupCommand) -> Result<(), Failure> {
    match command {
        GroupCommand::Create { title, members } => create(ctx, title, members).await,
        GroupCommand::Info { chat } => info(ctx, chat).await,
        GroupCommand::Add { chat, users } => {
            let members: Vec<UserId> = users.into_iter().map(UserId).collect();
            let asked = GroupChange::MembersAdded(members.clone());
            change(ctx, &asked, async move |c: &Connection| {
                c.client.add_members(ChatId(chat), members).await
            })
            .await
        }
        GroupCommand::Remove { chat, user } => {
            let asked = GroupChange::MemberRemoved(UserId(user));
            change(ctx, &asked, async move |c: &Connection| {
                c.client.remove_member(ChatId(chat), UserId(user)).await
            })
            .await
        }
        GroupCommand::Leave { chat } => {
            change(ctx, &GroupChange::Left, async move |c: &Connection| {
                c.client.leave_group(ChatId(chat)).await
            })
            .await
        }
        GroupCommand::Admin { chat, user, demote } => {
            let asked = if demote {
                GroupChange::AdminDemoted(UserId(user))
            } else {
                GroupChange::AdminPromoted(UserId(user))
            };
            change(ctx, &asked, async move |c: &Connection| {
                c.client
                    .set_admin(ChatId(chat), UserId(user), !demote)
                    .await
            })
            .await
        }
        GroupCommand::Edit {
            chat,
            title,
            description,
        } => {
            check_info(title.as_deref(), description.as_deref())?;
            let asked = GroupChange::InfoChanged {
                title: title.clone(),
                description: description.clone(),
            };
            change(ctx, &asked, async move |c: &Connection| {
                c.client
                    .edit_group_info(ChatId(chat), title, description)
                    .await
            })
            .await
        }
        GroupCommand::Settings {
            chat,
            members_can_add,
            members_can_edit_info,
            announcement_only,
        } => {
            // The request replaces all settings: start from the current ones.
            let (conn, _) = ctx.connect().await?;
            let chat = ChatId(chat);
            let result = async {
                let current = conn
                    .call("reading the group", conn.client.group_info(chat))
                    .await?
                    .settings;
                let settings = GroupSettings {
                    members_can_add: members_can_add.unwrap_or(current.members_can_add),
                    members_can_edit_info: members_can_edit_info
                        .unwrap_or(current.members_can_edit_info),
                    announcement_only: announcement_only.unwrap_or(current.announcement_only),
                };
                let sent = conn
                    .call(
                        "changing the settings",
                        conn.client.set_group_settings(chat, settings),
                    )
                    .await?;
                Ok::<_, Failure>((sent, settings))
            }
            .await;
            ctx.finish(conn).await?;
            let (sent, settings) = result?;
            let asked = GroupChange::SettingsChanged(settings);
            ctx.out.print(&Record::group_changed(&sent, &asked))
        }
    }
}

/// The local checks of a title and description, so a typo costs no connection.
fn check_info(title: Option<&str>, description: Option<&str>) -> Result<(), Failure> {
    if let Some(t) = title {
        if t.trim().is_empty() {
            return Err(Failure::Usage("the title is empty".into()));
        }
        check_len("the title", t, "a group title", MAX_GROUP_TITLE_LEN)?;
    }
    if let Some(d) = description {
        check_len("the description", d, "it", MAX_GROUP_DESCRIPTION_LEN)?;
    }
    Ok(())
}

/// `tern group create TITLE [--member USER]...`: prints the new group's `chat` line.
async fn create(ctx: &mut Ctx, title: String, members: Vec<u64>) -> Result<(), Failure> {
    check_info(Some(&title), None)?;
    let (conn, _) = ctx.connect().await?;
    let members = members.into_iter().map(UserId).collect();
    let result = conn
        .call(
            "creating the group (it may or may not have been created: check `tern chats`)",
            conn.client.create_group(title, members),
        )
        .await;
    ctx.finish(conn).await?;
    ctx.out.print(&Record::chat(&result?))
}

/// `tern group info CHAT`.
async fn info(ctx: &mut Ctx, chat: u64) -> Result<(), Failure> {
    let (conn, _) = ctx.connect().await?;
    let result = conn
        .call("reading the group", conn.client.group_info(ChatId(chat)))
        .await;
    ctx.finish(conn).await?;
    ctx.out.print(&Record::group(&result?))
}

/// Runs one group change and prints its `group_changed` line.
async fn change(
    ctx: &mut Ctx,
    asked: &GroupChange,
    op: impl AsyncFnOnce(&Connection) -> Result<Sent, tern_sdk::Error>,
) -> Result<(), Failure> {
    let (conn, _) = ctx.connect().await?;
    let result = conn
        .call(
            "changing the group (it may or may not have been changed: check `tern group info`)",
            op(&conn),
        )
        .await;
    ctx.finish(conn).await?;
    ctx.out.print(&Record::group_changed(&result?, asked))
}
