//! `tern profile|lookup|contacts|block|unblock|blocked|privacy|presence|watch|typing`: the social
//! layer from the command line. What the server hides from this user (a photo, an about text, a
//! last seen) is printed as absent: the server removed it before it left.

use tern_sdk::ClientEvent;
use tern_sdk::protocol::limits::{MAX_ABOUT_LEN, MAX_DISPLAY_NAME_LEN};
use tern_sdk::protocol::{Audience, ChatId, PrivacySettings, ProfileEdit, UserId};

use super::Ctx;
use super::chat::check_len;
use super::tail::{Stop, sleep_until};
use crate::args::{ContactsAction, PrivacyArgs, ProfileArgs, WatchArgs};
use crate::failure::Failure;
use crate::output::Record;

/// `tern profile [USER]`, or with change flags, change this user's profile.
pub async fn profile(ctx: &mut Ctx, args: ProfileArgs) -> Result<(), Failure> {
    if let Some(n) = &args.name {
        check_len("the name", n, "a display name", MAX_DISPLAY_NAME_LEN)?;
    }
    if let Some(a) = &args.about {
        check_len("the about text", a, "it", MAX_ABOUT_LEN)?;
    }
    let changing = args.name.is_some()
        || args.about.is_some()
        || args.username.is_some()
        || args.clear_username;
    let (conn, session) = ctx.connect().await?;
    let result = async {
        if !changing {
            let user = args.user.map_or(session.user_id, UserId);
            return conn
                .call("reading the profile", conn.client.profile(user))
                .await;
        }
        let mut latest = None;
        if args.name.is_some() || args.about.is_some() {
            let edit = ProfileEdit {
                display_name: args.name.clone(),
                about: args.about.clone(),
                avatar: None,
            };
            latest = Some(
                conn.call("changing the profile", conn.client.set_profile(edit))
                    .await?,
            );
        }
        if args.username.is_some() || args.clear_username {
            let name = args.username.as_deref();
            latest = Some(
                conn.call("changing the username", conn.client.set_username(name))
                    .await?,
            );
        }
        match latest {
            Some(p) => Ok(p),
            None => Err(Failure::Usage("nothing to change".into())),
        }
    }
    .await;
    ctx.finish(conn).await?;
    ctx.out.print(&Record::profile(&result?))
}

/// `tern lookup QUERY`: `@name` or a bare name is a username; `+...` or `x@y` an identifier.
pub async fn lookup(ctx: &mut Ctx, query: &str) -> Result<(), Failure> {
    let q = query.trim();
    let identifier = q.starts_with('+') || (q.contains('@') && !q.starts_with('@'));
    let (conn, _) = ctx.connect().await?;
    let result = if identifier {
        conn.call("looking up", conn.client.lookup_identifier(q))
            .await
    } else {
        let name = q.trim_start_matches('@');
        conn.call("looking up", conn.client.lookup_username(name))
            .await
    };
    ctx.finish(conn).await?;
    match result? {
        Some(p) => ctx.out.print(&Record::profile(&p)),
        None => ctx.out.print(&Record::NotFound { query: q.into() }),
    }
}

/// `tern contacts [add USER | remove USER]`.
pub async fn contacts(ctx: &mut Ctx, action: Option<ContactsAction>) -> Result<(), Failure> {
    let (conn, _) = ctx.connect().await?;
    let result = match action {
        None => conn
            .call("listing contacts", conn.client.contacts())
            .await
            .map(|list| list.iter().map(Record::profile).collect::<Vec<_>>()),
        Some(ContactsAction::Add { user }) => conn
            .call("adding the contact", conn.client.add_contact(UserId(user)))
            .await
            .map(|()| {
                vec![Record::Contact {
                    user_id: user,
                    contact: true,
                }]
            }),
        Some(ContactsAction::Remove { user }) => conn
            .call(
                "removing the contact",
                conn.client.remove_contact(UserId(user)),
            )
            .await
            .map(|()| {
                vec![Record::Contact {
                    user_id: user,
                    contact: false,
                }]
            }),
    };
    ctx.finish(conn).await?;
    for r in result? {
        ctx.out.print(&r)?;
    }
    Ok(())
}

/// `tern block USER` / `tern unblock USER`.
pub async fn block(ctx: &mut Ctx, user: u64, block: bool) -> Result<(), Failure> {
    let (conn, _) = ctx.connect().await?;
    let result = if block {
        conn.call("blocking", conn.client.block(UserId(user))).await
    } else {
        conn.call("unblocking", conn.client.unblock(UserId(user)))
            .await
    };
    ctx.finish(conn).await?;
    result?;
    ctx.out.print(&Record::Blocked {
        user_id: user,
        blocked: block,
    })
}

/// `tern blocked`.
pub async fn blocked(ctx: &mut Ctx) -> Result<(), Failure> {
    let (conn, _) = ctx.connect().await?;
    let result = conn
        .call("listing blocked users", conn.client.blocked())
        .await;
    ctx.finish(conn).await?;
    for u in result? {
        ctx.out.print(&Record::Blocked {
            user_id: u.0,
            blocked: true,
        })?;
    }
    Ok(())
}

/// `tern privacy [--last-seen A] [--online A] [--photo A] [--about A]`.
pub async fn privacy(ctx: &mut Ctx, args: PrivacyArgs) -> Result<(), Failure> {
    let changes = [
        args.last_seen.as_deref().map(parse_audience).transpose()?,
        args.online.as_deref().map(parse_audience).transpose()?,
        args.photo.as_deref().map(parse_audience).transpose()?,
        args.about.as_deref().map(parse_audience).transpose()?,
    ];
    let (conn, _) = ctx.connect().await?;
    let result = async {
        let current = conn
            .call("reading privacy settings", conn.client.privacy())
            .await?;
        if changes.iter().all(Option::is_none) {
            return Ok(current);
        }
        let [last_seen, online, photo, about] = changes;
        let settings = PrivacySettings {
            last_seen: last_seen.unwrap_or(current.last_seen),
            online: online.unwrap_or(current.online),
            photo: photo.unwrap_or(current.photo),
            about: about.unwrap_or(current.about),
        };
        conn.call(
            "changing privacy settings",
            conn.client.set_privacy(settings),
        )
        .await
    }
    .await;
    ctx.finish(conn).await?;
    ctx.out.print(&Record::privacy(&result?))
}

/// An audience as typed: everyone, contacts, nobody, contacts_except:1,2 (or contacts-except).
pub fn parse_audience(s: &str) -> Result<Audience, Failure> {
    let lower = s.trim().to_lowercase().replace('-', "_");
    match lower.as_str() {
        "everyone" => Ok(Audience::Everyone),
        "contacts" => Ok(Audience::Contacts),
        "nobody" => Ok(Audience::Nobody),
        other => {
            let ids = other.strip_prefix("contacts_except:").ok_or_else(|| {
                Failure::Usage(format!(
                    "{s:?} is not an audience: use everyone, contacts, nobody or \
                     contacts_except:ID,ID"
                ))
            })?;
            ids.split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.trim()
                        .parse()
                        .map(UserId)
                        .map_err(|_| Failure::Usage(format!("{p:?} in {s:?} is not a user id")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Audience::ContactsExcept)
        }
    }
}

/// `tern presence USER...`: the snapshot, once.
pub async fn presence(ctx: &mut Ctx, users: Vec<u64>) -> Result<(), Failure> {
    let (conn, _) = ctx.connect().await?;
    let users = users.into_iter().map(UserId).collect();
    let result = conn
        .call("reading presence", conn.client.watch_presence(users))
        .await;
    ctx.finish(conn).await?;
    for p in result? {
        ctx.out.print(&Record::presence(&p))?;
    }
    Ok(())
}

/// `tern watch USER... [--timeout D] [--count N]`: the snapshot, then each change.
pub async fn watch(ctx: &mut Ctx, args: WatchArgs) -> Result<(), Failure> {
    let mut stop = Stop::new()?;
    let (mut conn, _) = ctx.connect().await?;
    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    let users = args.users.iter().copied().map(UserId).collect();
    let result = async {
        let mut printed = 0u64;
        let snapshot = conn
            .call("watching presence", conn.client.watch_presence(users))
            .await?;
        for p in &snapshot {
            if args.count.is_some_and(|n| printed >= n) {
                return Ok(());
            }
            ctx.out.print(&Record::presence(p))?;
            printed += 1;
        }
        while args.count.is_none_or(|n| printed < n) {
            let event = tokio::select! {
                event = conn.next_update(&ctx.store, &mut ctx.profile) => event?,
                () = sleep_until(deadline) => return Ok(()),
                () = stop.wait() => return Ok(()),
            };
            match event {
                Some(ClientEvent::Presence(p)) => {
                    ctx.out.print(&Record::presence(&p))?;
                    printed += 1;
                }
                Some(_) => {}
                None => return Err(Failure::Local("the SDK client stopped".into())),
            }
        }
        Ok::<(), Failure>(())
    }
    .await;
    ctx.finish(conn).await?;
    result
}

/// `tern typing CHAT [--stop]`: best effort, as typing is (a datagram when possible).
pub async fn typing(ctx: &mut Ctx, chat: u64, typing: bool) -> Result<(), Failure> {
    let (conn, _) = ctx.connect().await?;
    let result = conn.client.set_typing(ChatId(chat), typing);
    // A round trip after it, so the indicator left before the connection closes.
    let _ = conn.call("pinging", conn.client.privacy()).await;
    ctx.finish(conn).await?;
    result.map_err(Failure::from)?;
    ctx.out.print(&Record::TypingSent {
        chat_id: chat,
        typing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_parse_as_documented() {
        assert_eq!(parse_audience("Everyone").unwrap(), Audience::Everyone);
        assert_eq!(parse_audience("contacts").unwrap(), Audience::Contacts);
        assert_eq!(parse_audience("nobody").unwrap(), Audience::Nobody);
        assert_eq!(
            parse_audience("contacts-except:2,3").unwrap(),
            Audience::ContactsExcept(vec![UserId(2), UserId(3)])
        );
        assert!(parse_audience("friends").is_err());
        assert!(parse_audience("contacts_except:x").is_err());
    }
}
