//! Reads login codes from the file the server's `file:` OTP sender appends to, one
//! `identifier code` line per code.
//!
//! The file is tailed incrementally (it is kept open and only new bytes are read), so thousands
//! of concurrent logins cost one small read each rather than one full scan each. A caller notes
//! the line count ([`OtpFile::mark`]) before requesting a code and then waits for a line for its
//! identifier after that mark, so a stale code from an earlier request is never used.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Reading a code failed.
#[derive(Debug, thiserror::Error)]
pub enum OtpError {
    /// The file exists but could not be read.
    #[error("reading OTP file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// No code for the identifier appeared in time.
    #[error("no OTP code for {identifier} appeared in {path} within {waited:?}")]
    Timeout {
        /// Who asked.
        identifier: String,
        /// The file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// The lock was poisoned by a panicking reader.
    #[error("OTP reader state poisoned")]
    Poisoned,
}

#[derive(Debug, Default)]
struct Tail {
    file: Option<File>,
    partial: Vec<u8>,
    lines: u64,
    /// identifier -> (line number, code) of its latest code not yet taken.
    codes: HashMap<String, (u64, String)>,
}

/// A tailing reader of an OTP file.
#[derive(Debug)]
pub struct OtpFile {
    path: PathBuf,
    tail: Mutex<Tail>,
}

impl OtpFile {
    /// A reader of `path` (which may not exist yet).
    pub fn new(path: &Path) -> Self {
        OtpFile {
            path: path.to_owned(),
            tail: Mutex::new(Tail::default()),
        }
    }

    fn io(&self, source: std::io::Error) -> OtpError {
        OtpError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Reads what was appended since the last call; returns the number of lines seen so far.
    fn refresh(&self) -> Result<u64, OtpError> {
        let mut tail = self.tail.lock().map_err(|_| OtpError::Poisoned)?;
        if tail.file.is_none() {
            match File::open(&self.path) {
                Ok(f) => tail.file = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(tail.lines),
                Err(e) => return Err(self.io(e)),
            }
        }
        let mut fresh = Vec::new();
        if let Some(f) = tail.file.as_mut() {
            f.read_to_end(&mut fresh).map_err(|e| self.io(e))?;
        }
        if fresh.is_empty() {
            return Ok(tail.lines);
        }
        let mut buf = std::mem::take(&mut tail.partial);
        buf.extend_from_slice(&fresh);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(&buf[start..start + nl]).into_owned();
            start += nl + 1;
            tail.lines += 1;
            let n = tail.lines;
            if let Some((id, code)) = line.trim().rsplit_once(' ') {
                tail.codes.insert(id.to_owned(), (n, code.to_owned()));
            }
        }
        tail.partial = buf[start..].to_vec();
        Ok(tail.lines)
    }

    /// The number of lines written so far; pass it to [`OtpFile::wait_code`] after requesting.
    pub fn mark(&self) -> Result<u64, OtpError> {
        self.refresh()
    }

    /// Takes the code for `identifier` written after line `after`, waiting up to `timeout`.
    pub async fn wait_code(
        &self,
        identifier: &str,
        after: u64,
        timeout: Duration,
    ) -> Result<String, OtpError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            self.refresh()?;
            {
                let mut tail = self.tail.lock().map_err(|_| OtpError::Poisoned)?;
                if let Some((line, _)) = tail.codes.get(identifier)
                    && *line > after
                    && let Some((_, code)) = tail.codes.remove(identifier)
                {
                    return Ok(code);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(OtpError::Timeout {
                    identifier: identifier.to_owned(),
                    path: self.path.clone(),
                    waited: timeout,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[tokio::test]
    async fn codes_are_read_incrementally_and_only_after_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("otp.txt");
        let otp = OtpFile::new(&path);
        assert_eq!(otp.mark().unwrap(), 0, "a missing file has no lines");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, "a@x.test 111111").unwrap();
        let mark = otp.mark().unwrap();
        assert_eq!(mark, 1);
        // A stale code (before the mark) is not used.
        let quick = Duration::from_millis(30);
        assert!(otp.wait_code("a@x.test", mark, quick).await.is_err());
        // A partial line is completed by the next write.
        write!(f, "b@x.test 2222").unwrap();
        f.flush().unwrap();
        assert!(otp.wait_code("b@x.test", mark, quick).await.is_err());
        writeln!(f, "22\na@x.test 333333").unwrap();
        assert_eq!(
            otp.wait_code("a@x.test", mark, quick).await.unwrap(),
            "333333"
        );
        assert_eq!(
            otp.wait_code("b@x.test", mark, quick).await.unwrap(),
            "222222"
        );
        assert!(
            otp.wait_code("a@x.test", mark, quick).await.is_err(),
            "a code is taken once"
        );
    }
}
