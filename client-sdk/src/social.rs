//! The social layer's typed API: profiles, usernames, lookup, contacts, blocking, privacy,
//! presence watches, foreground state and typing.
//!
//! Presence and typing are driver commands rather than plain requests because they are state
//! the driver keeps: the watch list and the foreground flag are sent again after every
//! reconnect, and typing picks a QUIC datagram or the stream per connection.

use tern_protocol::limits::{MAX_PRESENCE_WATCH, MAX_USERNAME_LEN, MIN_USERNAME_LEN};
use tern_protocol::{
    ChatId, ErrorBody, ErrorCode, Presence, PrivacySettings, Profile, ProfileEdit, Request,
    Response, UserId, UserQuery,
};
use tokio::sync::oneshot;

use crate::client::{Client, closed, unexpected};
use crate::driver::Command;
use crate::error::Error;

impl Client {
    /// A user's profile as this user may see it (photo and about hidden by their privacy).
    pub async fn profile(&self, user_id: UserId) -> Result<Profile, Error> {
        profile(self.request(Request::GetProfile { user_id }).await?)
    }

    /// Changes this user's profile; `None` fields stay. Contacts and chat peers are told.
    pub async fn set_profile(&self, edit: ProfileEdit) -> Result<Profile, Error> {
        profile(self.request(Request::SetProfile(edit)).await?)
    }

    /// Takes, changes or (`None`) drops this user's username. Checked here first: 3 to 32 of
    /// `a-z0-9_.` starting with a letter (input is lowercased, as the server does).
    pub async fn set_username(&self, username: Option<&str>) -> Result<Profile, Error> {
        let username = match username {
            Some(u) => Some(valid_username(u)?),
            None => None,
        };
        profile(self.request(Request::SetUsername { username }).await?)
    }

    /// Finds a user by username (`None` when there is none, or the daily lookups are spent:
    /// that is `Err` with `RateLimited`).
    pub async fn lookup_username(&self, username: &str) -> Result<Option<Profile>, Error> {
        let q = UserQuery::Username(username.trim().to_lowercase());
        lookup(self.request(Request::LookupUser(q)).await?)
    }

    /// Finds a user by phone number or email address.
    pub async fn lookup_identifier(&self, identifier: &str) -> Result<Option<Profile>, Error> {
        let q = UserQuery::Identifier(identifier.trim().into());
        lookup(self.request(Request::LookupUser(q)).await?)
    }

    /// Adds a user to this user's contacts.
    pub async fn add_contact(&self, user_id: UserId) -> Result<(), Error> {
        done(self.request(Request::AddContact { user_id }).await?)
    }

    /// Removes a user from this user's contacts.
    pub async fn remove_contact(&self, user_id: UserId) -> Result<(), Error> {
        done(self.request(Request::RemoveContact { user_id }).await?)
    }

    /// This user's contacts with their profiles.
    pub async fn contacts(&self) -> Result<Vec<Profile>, Error> {
        match self.request(Request::ListContacts).await? {
            Response::Profiles(p) => Ok(p),
            other => Err(unexpected(&other)),
        }
    }

    /// Blocks a user (they are not told).
    pub async fn block(&self, user_id: UserId) -> Result<(), Error> {
        done(self.request(Request::Block { user_id }).await?)
    }

    /// Lifts a block.
    pub async fn unblock(&self, user_id: UserId) -> Result<(), Error> {
        done(self.request(Request::Unblock { user_id }).await?)
    }

    /// The users this user blocked.
    pub async fn blocked(&self) -> Result<Vec<UserId>, Error> {
        match self.request(Request::ListBlocked).await? {
            Response::Users(u) => Ok(u),
            other => Err(unexpected(&other)),
        }
    }

    /// This user's privacy settings.
    pub async fn privacy(&self) -> Result<PrivacySettings, Error> {
        privacy(self.request(Request::GetPrivacy).await?)
    }

    /// Replaces this user's privacy settings.
    pub async fn set_privacy(&self, settings: PrivacySettings) -> Result<PrivacySettings, Error> {
        privacy(self.request(Request::SetPrivacy(settings)).await?)
    }

    /// Watches these users (replacing the previous list; empty stops watching): answers the
    /// snapshot, then changes arrive as [`crate::ClientEvent::Presence`]. The list is kept and
    /// sent again after every reconnect. Called while offline, it waits for the connection.
    pub async fn watch_presence(&self, users: Vec<UserId>) -> Result<Vec<Presence>, Error> {
        if users.len() > MAX_PRESENCE_WATCH {
            return Err(rejected(
                ErrorCode::TooLarge,
                format!("at most {MAX_PRESENCE_WATCH} users may be watched"),
            ));
        }
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Watch { users, reply })
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Tells the server whether the app is in the foreground (a user in the background on
    /// every device shows as offline). Kept across reconnects.
    pub fn set_foreground(&self, foreground: bool) -> Result<(), Error> {
        self.commands
            .send(Command::Foreground(foreground))
            .map_err(|_| closed())
    }

    /// This user is typing in a chat (`true`; repeat about every `typing_ttl_ms / 2` while
    /// typing goes on) or stopped. Best effort: a QUIC datagram when possible, dropped while
    /// offline, never answered.
    pub fn set_typing(&self, chat_id: ChatId, typing: bool) -> Result<(), Error> {
        self.commands
            .send(Command::Typing { chat_id, typing })
            .map_err(|_| closed())
    }
}

/// The username as the server will store it, or why it cannot be one.
pub(crate) fn valid_username(input: &str) -> Result<String, Error> {
    let name = input.trim().to_lowercase();
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    let starts = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if (MIN_USERNAME_LEN..=MAX_USERNAME_LEN).contains(&name.len())
        && ok_chars
        && starts
        && !name.contains("..")
        && !name.ends_with('.')
    {
        Ok(name)
    } else {
        Err(rejected(
            ErrorCode::InvalidArgument,
            format!(
                "a username is {MIN_USERNAME_LEN} to {MAX_USERNAME_LEN} of a-z, 0-9, _ and ., \
                 starts with a letter, has no .. and does not end with ."
            ),
        ))
    }
}

fn rejected(code: ErrorCode, message: String) -> Error {
    Error::Rejected(ErrorBody::new(code, message))
}

fn profile(r: Response) -> Result<Profile, Error> {
    match r {
        Response::Profile(p) => Ok(p),
        other => Err(unexpected(&other)),
    }
}

fn lookup(r: Response) -> Result<Option<Profile>, Error> {
    match r {
        Response::Lookup(p) => Ok(p),
        other => Err(unexpected(&other)),
    }
}

fn privacy(r: Response) -> Result<PrivacySettings, Error> {
    match r {
        Response::Privacy(p) => Ok(p),
        other => Err(unexpected(&other)),
    }
}

fn done(r: Response) -> Result<(), Error> {
    match r {
        Response::Done => Ok(()),
        other => Err(unexpected(&other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_checked_like_the_server_does() {
        assert_eq!(valid_username("  Ann_1 ").unwrap(), "ann_1");
        assert_eq!(valid_username("a.b.c").unwrap(), "a.b.c");
        for bad in [
            "ab",
            "1ann",
            "_ann",
            "an..n",
            "ann.",
            "an n",
            "änn",
            &"a".repeat(33),
        ] {
            let e = valid_username(bad).unwrap_err();
            assert_eq!(e.code(), Some(ErrorCode::InvalidArgument), "{bad}");
        }
        assert!(valid_username(&"a".repeat(32)).is_ok());
    }
}
