//! Profiles and usernames: the username rule, profile edits, and what a viewer sees of a
//! profile. Every change is one storage commit that also writes the `ProfileChanged` updates
//! (see [`crate::storage::Storage::change_profile`] for the recipients), so a peer's device
//! learns of a change exactly when it is durable.

use std::time::Instant;

use tern_protocol::limits::{
    MAX_ABOUT_LEN, MAX_DISPLAY_NAME_LEN, MAX_USERNAME_LEN, MIN_USERNAME_LEN,
};
use tern_protocol::{ErrorBody, ErrorCode, Profile, ProfileEdit, SessionInfo, UserId};

use super::SocialService;
use crate::auth::storage_error;
use crate::policy::Attribute;
use crate::storage::{ProfileChange, ProfileRecord};

fn invalid(why: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidArgument, why)
}

/// The username rule: input trimmed and lowercased; then `MIN_USERNAME_LEN..=MAX_USERNAME_LEN`
/// bytes of `[a-z0-9_.]`, starting with a letter, no `..`, not ending in `.`. The error names
/// the rule that failed. Lookups normalise the same way, so case never matters.
pub fn normalise_username(raw: &str) -> Result<String, ErrorBody> {
    let name = raw.trim().to_lowercase();
    if !(MIN_USERNAME_LEN..=MAX_USERNAME_LEN).contains(&name.len()) {
        return Err(invalid(format!(
            "a username has {MIN_USERNAME_LEN} to {MAX_USERNAME_LEN} characters"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
    {
        return Err(invalid(
            "a username has only the letters a-z, digits, '_' and '.'",
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(invalid("a username starts with a letter"));
    }
    if name.contains("..") {
        return Err(invalid("a username has no '..'"));
    }
    if name.ends_with('.') {
        return Err(invalid("a username does not end with '.'"));
    }
    Ok(name)
}

impl SocialService {
    /// A user's stored profile, the default (empty) one if never set.
    pub(super) async fn record(&self, user: UserId) -> Result<ProfileRecord, ErrorBody> {
        Ok(self
            .storage
            .profile(user)
            .await
            .map_err(storage_error)?
            .unwrap_or_default())
    }

    /// `user`'s profile as `viewer` may see it: username and display name always (needed to
    /// recognise someone, blocked or not), about and photo only where the policy admits.
    pub(super) async fn view(
        &self,
        viewer: UserId,
        user: UserId,
        record: &ProfileRecord,
    ) -> Profile {
        let mut p = record.profile(user);
        if p.about.is_some() && !self.visible(viewer, user, Attribute::About).await {
            p.about = None;
        }
        if p.avatar.is_some() && !self.visible(viewer, user, Attribute::Photo).await {
            p.avatar = None;
        }
        p
    }

    /// Commits a change (with its `ProfileChanged` fan-out); the new profile as its owner sees it.
    async fn commit(&self, change: ProfileChange) -> Result<Profile, ErrorBody> {
        let user = change.user;
        let record = self
            .storage
            .change_profile(change)
            .await
            .map_err(storage_error)?;
        self.metrics.social_event("profile_changed");
        Ok(record.profile(user))
    }

    /// `SetProfile`: validates, spends the profile limiter (an empty edit is free), commits
    /// with the `ProfileChanged` fan-out.
    pub(super) async fn edit_profile(
        &self,
        s: SessionInfo,
        edit: ProfileEdit,
    ) -> Result<Profile, ErrorBody> {
        let display_name = edit.display_name.map(|n| n.trim().to_owned());
        if display_name
            .as_ref()
            .is_some_and(|n| n.len() > MAX_DISPLAY_NAME_LEN)
        {
            return Err(invalid(format!(
                "a display name has at most {MAX_DISPLAY_NAME_LEN} bytes"
            )));
        }
        if edit.about.as_ref().is_some_and(|a| a.len() > MAX_ABOUT_LEN) {
            return Err(invalid(format!(
                "the about text has at most {MAX_ABOUT_LEN} bytes"
            )));
        }
        if [&display_name, &edit.about]
            .iter()
            .any(|t| t.as_ref().is_some_and(|t| t.chars().any(char::is_control)))
        {
            return Err(invalid("profile text has no control characters"));
        }
        if display_name.is_none() && edit.about.is_none() && edit.avatar.is_none() {
            return Ok(self.record(s.user_id).await?.profile(s.user_id));
        }
        self.profile_changes
            .check(s.user_id, Instant::now())
            .await?;
        let change = ProfileChange {
            user: s.user_id,
            display_name,
            about: edit.about.map(|a| (!a.is_empty()).then_some(a)),
            avatar: edit.avatar,
            username: None,
            now_ms: crate::chat::now_ms(),
        };
        self.commit(change).await
    }

    /// `SetUsername`: the same name again is free and Ok; any other attempt, taken or not,
    /// spends the username limiter (so `SetUsername` cannot probe the directory faster than
    /// `LookupUser`); uniqueness is decided in the commit.
    pub(super) async fn change_username(
        &self,
        s: SessionInfo,
        username: Option<String>,
    ) -> Result<Profile, ErrorBody> {
        let name = username.as_deref().map(normalise_username).transpose()?;
        let current = self.record(s.user_id).await?;
        if current.username == name {
            return Ok(current.profile(s.user_id));
        }
        self.username_changes
            .check(s.user_id, Instant::now())
            .await?;
        let change = ProfileChange {
            user: s.user_id,
            display_name: None,
            about: None,
            avatar: None,
            username: Some(name),
            now_ms: crate::chat::now_ms(),
        };
        self.commit(change).await
    }
}

#[cfg(test)]
mod tests {
    use super::normalise_username;

    #[test]
    fn usernames_follow_the_rule() {
        for (raw, want) in [
            ("  Alice_01 ", Some("alice_01")),
            ("a.b.c", Some("a.b.c")),
            ("abc", Some("abc")),
            ("ab", None),
            (&"a".repeat(33), None),
            ("1abc", None),
            ("_abc", None),
            ("a..b", None),
            ("abc.", None),
            ("ab-c", None),
            ("äbc", None),
            ("ab c", None),
        ] {
            let got = normalise_username(raw).ok();
            assert_eq!(got.as_deref(), want, "{raw:?}");
        }
        let e = normalise_username("a..b").unwrap_err();
        assert!(e.message.contains(".."), "{e:?}");
    }
}
