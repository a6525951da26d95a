//! Why a command failed, and the one place that turns it into an exit code and a message that
//! names the cause and what to do. Scripts branch on the exit code; people read the hint.

use std::fmt;

use tern_sdk::Error as SdkError;
use tern_sdk::protocol::ErrorCode;

/// Exit code of a usage error (bad flags, missing input, not logged in).
pub const EXIT_USAGE: u8 = 1;
/// Exit code of a typed refusal by the server.
pub const EXIT_REFUSED: u8 = 2;
/// Exit code when the server cannot be reached or does not answer in time.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit code of a local failure (profile unreadable or in use, IO).
pub const EXIT_LOCAL: u8 = 4;

/// A failed command.
#[derive(Debug)]
pub enum Failure {
    /// The command line or the local state does not allow the command.
    Usage(String),
    /// The server answered with a typed error.
    Refused {
        /// The stable error code.
        code: ErrorCode,
        /// What went wrong.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// No connection, or no answer in time.
    Unreachable {
        /// What went wrong.
        message: String,
        /// What to do about it.
        hint: String,
    },
    /// Something on this machine failed.
    Local(String),
}

impl Failure {
    /// The documented exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Refused { .. } => EXIT_REFUSED,
            Failure::Unreachable { .. } => EXIT_UNREACHABLE,
            Failure::Local(_) => EXIT_LOCAL,
        }
    }

    /// The JSON `error` field: one word per exit code.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Usage(_) => "usage",
            Failure::Refused { .. } => "refused",
            Failure::Unreachable { .. } => "unreachable",
            Failure::Local(_) => "local",
        }
    }

    /// The server's code, when it refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Failure::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        match self {
            Failure::Usage(m) | Failure::Local(m) => m,
            Failure::Refused { message, .. } | Failure::Unreachable { message, .. } => message,
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Failure::Refused { hint, .. } => hint.as_deref(),
            Failure::Unreachable { hint, .. } => Some(hint),
            Failure::Usage(_) | Failure::Local(_) => None,
        }
    }

    /// A server refusal with the standard cause and hint for its code.
    pub fn refused(code: ErrorCode, server_message: &str) -> Failure {
        let (cause, hint) = explain(code);
        // The server's words add to the cause only when they say something else.
        let message = if server_message.is_empty() || server_message.eq_ignore_ascii_case(cause) {
            cause.to_owned()
        } else {
            format!("{cause} ({server_message})")
        };
        Failure::Refused {
            code,
            message,
            hint: hint.map(str::to_owned),
        }
    }

    /// Spells the "log in again" advice out for this profile and identifier, so it can be
    /// pasted as it is.
    pub fn for_profile(mut self, profile: &str, identifier: Option<&str>) -> Failure {
        if let Failure::Refused { hint, .. } = &mut self
            && hint.as_deref() == Some(LOGIN_AGAIN)
        {
            let flag = if profile == "default" {
                String::new()
            } else {
                format!("--profile {profile} ")
            };
            let who = identifier.unwrap_or("IDENTIFIER");
            *hint = Some(format!("run `tern {flag}login {who}` again"));
        }
        self
    }

    /// No answer from the server within `what`'s deadline.
    pub fn timed_out(what: &str) -> Failure {
        Failure::Unreachable {
            message: format!("no answer from the server: {what}"),
            hint: "check that the server is running and reachable, or raise --request-timeout"
                .into(),
        }
    }
}

/// The generic advice after a failed login or an ended session; [`Failure::for_profile`] makes
/// it the exact command to type.
const LOGIN_AGAIN: &str = "run `tern login IDENTIFIER` again";

/// The cause and the advice for a server error code.
fn explain(code: ErrorCode) -> (&'static str, Option<&'static str>) {
    match code {
        ErrorCode::OtpInvalid => ("wrong code", Some(LOGIN_AGAIN)),
        ErrorCode::OtpExpired => ("code expired or replaced by a newer one", Some(LOGIN_AGAIN)),
        ErrorCode::OtpTooManyAttempts => ("too many wrong codes", Some(LOGIN_AGAIN)),
        ErrorCode::RateLimited | ErrorCode::TooManyRequests => {
            ("too many requests", Some("wait a minute and try again"))
        }
        ErrorCode::DeviceRevoked => ("this device was revoked", Some(LOGIN_AGAIN)),
        ErrorCode::RefreshReused => (
            "this device's session was ended (its refresh token was used twice)",
            Some(LOGIN_AGAIN),
        ),
        ErrorCode::InvalidToken | ErrorCode::TokenExpired | ErrorCode::Unauthenticated => {
            ("the session is no longer valid", Some(LOGIN_AGAIN))
        }
        ErrorCode::NotFound => (
            "not found (or you are not a member)",
            Some("check the id with `tern chats` or `tern devices`"),
        ),
        ErrorCode::Forbidden => ("not allowed", None),
        ErrorCode::InvalidArgument => ("invalid argument", Some("check the command's arguments")),
        ErrorCode::TooLarge => ("too large", Some("send less at once")),
        ErrorCode::Overloaded | ErrorCode::ShuttingDown | ErrorCode::Internal => (
            "the server cannot serve this now",
            Some("try again shortly"),
        ),
        ErrorCode::UnsupportedVersion => (
            "the server does not speak this client's protocol version",
            Some("use a `tern` built from the same release as the server"),
        ),
        _ => ("refused", None),
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())?;
        if let Some(code) = self.code() {
            write!(f, " [{code}]")?;
        }
        if let Some(hint) = self.hint() {
            write!(f, ": {hint}")?;
        }
        Ok(())
    }
}

impl From<SdkError> for Failure {
    fn from(e: SdkError) -> Failure {
        match e {
            SdkError::Server(body) => Failure::refused(body.code, &body.message),
            SdkError::Timeout => Failure::timed_out("the request timed out"),
            SdkError::Disconnected => Failure::Unreachable {
                message: "the connection dropped while the request was in flight".into(),
                hint: "it may or may not have run: check, then try again".into(),
            },
            SdkError::Closed(reason) => Failure::Unreachable {
                message: format!("the client stopped: {reason}"),
                hint: "try again; if it persists, run `tern login IDENTIFIER` again".into(),
            },
            SdkError::Config(m) => Failure::Usage(m),
            // Caught before sending: the arguments, not the server, are at fault.
            SdkError::Rejected(body) => Failure::Usage(body.message),
            other => Failure::Local(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_sdk::protocol::ErrorBody;

    #[test]
    fn a_wrong_code_names_the_cause_the_code_and_what_to_do() {
        let f: Failure = SdkError::Server(ErrorBody::new(ErrorCode::OtpInvalid, "")).into();
        assert_eq!(f.exit_code(), EXIT_REFUSED);
        assert_eq!(
            f.to_string(),
            "wrong code [OtpInvalid(13)]: run `tern login IDENTIFIER` again"
        );
    }

    #[test]
    fn the_login_hint_is_the_command_to_type() {
        let f = Failure::refused(ErrorCode::OtpExpired, "").for_profile("bob", Some("b@x.org"));
        assert_eq!(
            f.hint(),
            Some("run `tern --profile bob login b@x.org` again")
        );
        let f = Failure::refused(ErrorCode::DeviceRevoked, "").for_profile("default", None);
        assert_eq!(f.hint(), Some("run `tern login IDENTIFIER` again"));
    }

    #[test]
    fn timeouts_are_unreachable_and_config_is_usage() {
        assert_eq!(
            Failure::from(SdkError::Timeout).exit_code(),
            EXIT_UNREACHABLE
        );
        assert_eq!(
            Failure::from(SdkError::Config("bad".into())).exit_code(),
            EXIT_USAGE
        );
        let rejected = ErrorBody::new(ErrorCode::InvalidArgument, "an edit needs a text");
        let f = Failure::from(SdkError::Rejected(rejected));
        assert_eq!(f.exit_code(), EXIT_USAGE);
        assert_eq!(f.to_string(), "an edit needs a text");
    }
}
