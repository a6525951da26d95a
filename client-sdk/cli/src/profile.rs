//! Profiles: one logged-in device each, stored as `<home>/profiles/<name>.json`.
//!
//! A profile holds a refresh token, which is a secret and single-use (the server rotates it and
//! revokes the whole family if a rotated one comes back). Hence: the file is created with mode
//! 0600 in a 0700 directory, every write is atomic (temp file, fsync, rename) so a crash never
//! leaves half a token, and a process holds an exclusive lock on `<name>.lock` for as long as it
//! runs, so two processes never refresh the same token concurrently.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tern_sdk::SyncState;
use tern_sdk::protocol::{SessionInfo, Tokens};

use crate::failure::Failure;

/// What a profile remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Server address as given at login (`HOST:PORT`).
    pub server: Option<String>,
    /// Pinned certificate fingerprint, hex.
    pub cert_fingerprint: Option<String>,
    /// The phone number or email address logged in with.
    pub identifier: Option<String>,
    /// User and device.
    pub session: Option<SessionInfo>,
    /// Access and refresh tokens; `None` when logged out.
    pub tokens: Option<Tokens>,
    /// Sync cursor: every update up to it has been printed by `tail`.
    #[serde(default)]
    pub sync: SyncState,
}

impl Profile {
    /// Whether there are tokens to resume with.
    pub fn logged_in(&self) -> bool {
        self.tokens.is_some() && self.session.is_some()
    }

    /// Forgets the tokens and the identity (server and fingerprint stay, for the next login).
    pub fn forget_session(&mut self) {
        self.tokens = None;
        self.session = None;
        self.sync = SyncState::default();
    }
}

/// A profile's files, locked by this process.
#[derive(Debug)]
pub struct ProfileStore {
    name: String,
    path: PathBuf,
    /// Held for the process lifetime: the OS releases it on exit, even on a crash.
    _lock: File,
}

impl ProfileStore {
    /// Opens (and locks) profile `name` under `home`; `None` picks the platform config dir.
    pub fn open(home: Option<&Path>, name: &str) -> Result<ProfileStore, Failure> {
        check_name(name)?;
        let home = match home {
            Some(h) => h.to_owned(),
            None => dirs::config_dir()
                .map(|d| d.join("tern"))
                .ok_or_else(|| Failure::Usage("no config directory: pass --home DIR".into()))?,
        };
        let dir = home.join("profiles");
        create_private_dir(&dir)?;
        let lock_path = dir.join(format!("{name}.lock"));
        let lock = private_options()
            .write(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| local(&lock_path, &e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Failure::Local(format!(
                    "profile {name} is in use by another tern process (a `tail`?): a profile is \
                     one device, and its refresh token must not be used twice at once; stop the \
                     other process or log in a second device with another --profile"
                )));
            }
            Err(fs::TryLockError::Error(e)) => return Err(local(&lock_path, &e)),
        }
        Ok(ProfileStore {
            name: name.to_owned(),
            path: dir.join(format!("{name}.json")),
            _lock: lock,
        })
    }

    /// The profile's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The profile file.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored profile, or an empty one if there is none yet.
    pub fn load(&self) -> Result<Profile, Failure> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Failure::Local(format!(
                    "profile {} is not valid ({e}): fix or delete it",
                    self.path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Profile::default()),
            Err(e) => Err(local(&self.path, &e)),
        }
    }

    /// Writes the profile atomically with mode 0600.
    pub fn save(&self, profile: &Profile) -> Result<(), Failure> {
        let bytes = serde_json::to_vec_pretty(profile)
            .map_err(|e| Failure::Local(format!("encoding the profile: {e}")))?;
        let tmp = self.path.with_extension("json.tmp");
        let written = (|| {
            let mut f = private_options().write(true).truncate(true).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        written.map_err(|e| local(&self.path, &e))
    }
}

/// Profile names become file names: keep them to a safe alphabet.
fn check_name(name: &str) -> Result<(), Failure> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Failure::Usage(format!(
            "bad profile name {name:?}: use letters, digits, '-', '_' or '.' (at most 64)"
        )))
    }
}

fn local(path: &Path, e: &std::io::Error) -> Failure {
    Failure::Local(format!("{}: {e}", path.display()))
}

/// Open options that create files readable by the owner only.
fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

fn create_private_dir(dir: &Path) -> Result<(), Failure> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|e| local(dir, &e))
}

#[cfg(test)]
mod tests;
