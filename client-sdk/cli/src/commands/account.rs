//! The account verbs: `login`, `logout`, `whoami`, `devices`, `revoke`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tern_sdk::protocol::{DeviceId, Request};

use super::Ctx;
use crate::args::LoginArgs;
use crate::connection::{Connection, Target};
use crate::failure::Failure;
use crate::output::Record;
use crate::profile::Profile;

/// Where the code comes from.
enum CodeSource {
    Given(String),
    File(PathBuf, u64),
    Prompt,
}

/// `tern login IDENTIFIER`: requests a code, reads it, and stores the new device's tokens.
pub async fn login(ctx: &mut Ctx, args: LoginArgs) -> Result<(), Failure> {
    let identifier = args.identifier.trim().to_owned();
    // Decide where the code comes from before asking for one, so a script without a code
    // source fails at once instead of burning a code (and a rate-limit token).
    let source = match (args.code, &args.otp_file) {
        (Some(code), _) => CodeSource::Given(code.trim().to_owned()),
        (None, Some(path)) => CodeSource::File(path.clone(), file_len(path)),
        (None, None) if std::io::stdin().is_terminal() => CodeSource::Prompt,
        (None, None) => {
            return Err(Failure::Usage(
                "no code: stdin is not a terminal, so pass --code CODE or --otp-file FILE".into(),
            ));
        }
    };
    let target = Target::resolve(&ctx.global, &ctx.profile, true)?;
    if let (true, Some(old)) = (ctx.profile.logged_in(), &ctx.profile.session) {
        ctx.out.note(&format!(
            "profile {} was logged in as user {} device {}; this login makes a new device \
             (revoke the old one with `tern revoke {}`)",
            ctx.store.name(),
            old.user_id,
            old.device_id,
            old.device_id
        ));
    }
    let mut fresh = Profile {
        server: Some(target.server.clone()),
        cert_fingerprint: Some(target.fingerprint.clone()),
        identifier: Some(identifier.clone()),
        ..Profile::default()
    };
    let device_name = args
        .device_name
        .unwrap_or_else(|| format!("tern CLI (profile {})", ctx.store.name()));
    let mut conn = Connection::start(&ctx.global, &target, &fresh, &device_name, false)?;
    conn.wait_connected(&ctx.store, &mut fresh, ctx.global.connect_timeout)
        .await?;
    let verified = verify(ctx, &conn, &identifier, source).await;
    if let Ok(session) = &verified {
        let snapshot = conn.call("reading the new tokens", conn.client.snapshot());
        fresh.tokens = snapshot.await?.tokens;
        fresh.session = Some(*session);
        ctx.store.save(&fresh)?;
        ctx.profile = fresh;
    }
    ctx.finish(conn).await?;
    let session = verified?;
    ctx.out.print(&Record::LoggedIn {
        profile: ctx.store.name().to_owned(),
        identifier,
        user_id: session.user_id.0,
        device_id: session.device_id.0,
        server: target.server,
    })
}

async fn verify(
    ctx: &Ctx,
    conn: &Connection,
    identifier: &str,
    source: CodeSource,
) -> Result<tern_sdk::protocol::SessionInfo, Failure> {
    conn.call("requesting a code", conn.client.request_otp(identifier))
        .await?;
    let code = match source {
        CodeSource::Given(code) => code,
        CodeSource::File(path, from) => {
            wait_for_code(&path, identifier, from, ctx.global.request_timeout).await?
        }
        CodeSource::Prompt => prompt(identifier).await?,
    };
    conn.call(
        "verifying the code",
        conn.client.verify_otp(identifier, &code),
    )
    .await
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The last code for `identifier` in the server's OTP file (lines `IDENTIFIER CODE`) written
/// after byte `from`, i.e. after this login asked for it.
fn code_in_file(path: &Path, identifier: &str, from: u64) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let start = usize::try_from(from).ok()?.min(bytes.len());
    String::from_utf8_lossy(&bytes[start..])
        .lines()
        .filter_map(|l| l.strip_prefix(identifier)?.strip_prefix(' '))
        .next_back()
        .map(|c| c.trim().to_owned())
}

async fn wait_for_code(
    path: &Path,
    identifier: &str,
    from: u64,
    timeout: Duration,
) -> Result<String, Failure> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(code) = code_in_file(path, identifier, from) {
            return Ok(code);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::Local(format!(
                "no code for {identifier} appeared in {} within {}: is the server running with \
                 --otp-sender file:{}?",
                path.display(),
                humantime::format_duration(timeout),
                path.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asks on the terminal. The prompt goes to stderr so stdout stays the result alone.
async fn prompt(identifier: &str) -> Result<String, Failure> {
    let question = format!("Code sent to {identifier}. Enter code: ");
    let line = tokio::task::spawn_blocking(move || {
        let mut err = std::io::stderr();
        let _ = err.write_all(question.as_bytes());
        let _ = err.flush();
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| Failure::Local(format!("reading the code: {e}")))?
    .map_err(|e| Failure::Local(format!("reading the code: {e}")))?;
    let code = line.trim().to_owned();
    if code.is_empty() {
        return Err(Failure::Usage(
            "no code entered: run `tern login` again".into(),
        ));
    }
    Ok(code)
}

/// `tern logout`: revokes this device on the server, then forgets its tokens.
pub async fn logout(ctx: &mut Ctx) -> Result<(), Failure> {
    let (conn, _) = ctx.connect().await?;
    let answer = tokio::time::timeout(
        ctx.global.request_timeout,
        conn.client.request(Request::Logout),
    )
    .await;
    ctx.finish(conn).await?;
    match answer {
        // The server ends the session right after revoking it; an answer lost to that close is
        // still a logout.
        Ok(Ok(_) | Err(tern_sdk::Error::Disconnected | tern_sdk::Error::Closed(_))) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => return Err(Failure::timed_out("logging out")),
    }
    ctx.profile.forget_session();
    ctx.store.save(&ctx.profile)?;
    ctx.out.print(&Record::LoggedOut {
        profile: ctx.store.name().to_owned(),
    })
}

/// `tern whoami`: what the profile says, without asking the server.
pub fn whoami(ctx: &Ctx) -> Result<(), Failure> {
    let p = &ctx.profile;
    ctx.out.print(&Record::Whoami {
        profile: ctx.store.name().to_owned(),
        logged_in: p.logged_in(),
        identifier: p.identifier.clone(),
        user_id: p.session.map(|s| s.user_id.0),
        device_id: p.session.map(|s| s.device_id.0),
        server: p.server.clone(),
        cursor: p.sync.cursor.pts,
    })
}

/// `tern devices`.
pub async fn devices(ctx: &mut Ctx) -> Result<(), Failure> {
    let (conn, session) = ctx.connect().await?;
    let result = conn.call("listing devices", conn.client.devices()).await;
    ctx.finish(conn).await?;
    for d in result? {
        ctx.out
            .print(&Record::device(&d, d.device_id == session.device_id))?;
    }
    Ok(())
}

/// `tern revoke DEVICE`; revoking this very device is a logout.
pub async fn revoke(ctx: &mut Ctx, device: u64) -> Result<(), Failure> {
    let (conn, session) = ctx.connect().await?;
    let device_id = DeviceId(device);
    let result = conn
        .call("revoking the device", conn.client.revoke_device(device_id))
        .await;
    ctx.finish(conn).await?;
    let own = device_id == session.device_id;
    match result {
        Ok(()) => {}
        Err(Failure::Unreachable { .. }) if own => {}
        Err(e) => return Err(e),
    }
    if own {
        ctx.profile.forget_session();
        ctx.store.save(&ctx.profile)?;
    }
    ctx.out.print(&Record::Revoked { device_id: device })
}
