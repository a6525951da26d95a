//! Where OTP codes go: the server log (dev), a file named by the operator (load tests on loopback),
//! or a webhook that forwards them to an SMS or mail gateway.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Delivering a code failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// Writing the code file failed.
    #[error("writing the OTP file: {0}")]
    File(#[from] std::io::Error),
    /// The webhook could not be reached or answered with an error status.
    #[error("OTP webhook: {0}")]
    Webhook(String),
}

/// Delivers one-time codes to their owner.
#[async_trait]
pub trait OtpSender: Send + Sync + std::fmt::Debug + 'static {
    /// Sends `code` to `identifier`.
    async fn send(&self, identifier: &str, code: &str) -> Result<(), SendError>;
    /// A short description for the start-up log.
    fn describe(&self) -> String;
}

/// Dev default: writes codes to the server log at INFO.
#[derive(Debug, Default)]
pub struct LogSender;

#[async_trait]
impl OtpSender for LogSender {
    async fn send(&self, identifier: &str, code: &str) -> Result<(), SendError> {
        tracing::info!(%identifier, %code, "dev OTP code (log sender; never use in production)");
        Ok(())
    }

    fn describe(&self) -> String {
        "log (codes are printed to this log: development only)".into()
    }
}

/// Appends `identifier code` lines to a file, so load and test clients can log in through the real
/// OTP flow. The server refuses this sender unless it listens on loopback only.
///
/// Format (documented in docs/operations.md, read by `tern-tests` and `tern-loadgen`): one line per
/// issued code, the normalised identifier, one space, the six digits, `\n`; appended in issue
/// order, so the newest line for an identifier is its current code.
#[derive(Debug)]
pub struct FileSender {
    path: PathBuf,
    lock: Mutex<()>,
}

impl FileSender {
    /// A sender appending to `path`.
    pub fn new(path: PathBuf) -> Self {
        FileSender {
            path,
            lock: Mutex::new(()),
        }
    }
}

#[async_trait]
impl OtpSender for FileSender {
    async fn send(&self, identifier: &str, code: &str) -> Result<(), SendError> {
        let _guard = self
            .lock
            .lock()
            .map_err(|_| SendError::Webhook("poisoned lock".into()))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        writeln!(f, "{identifier} {code}")?;
        f.flush()?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("file {} (test/load only, loopback)", self.path.display())
    }
}

/// POSTs `{"identifier": .., "code": ..}` as JSON to a gateway URL.
#[derive(Debug)]
pub struct WebhookSender {
    url: hyper::Uri,
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
}

impl WebhookSender {
    /// A sender posting to `url` (http or https).
    pub fn new(url: &str) -> Result<Self, SendError> {
        let url: hyper::Uri = url
            .parse()
            .map_err(|e| SendError::Webhook(format!("bad URL: {e}")))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        Ok(WebhookSender {
            url,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }
}

#[async_trait]
impl OtpSender for WebhookSender {
    async fn send(&self, identifier: &str, code: &str) -> Result<(), SendError> {
        let body = serde_json::json!({ "identifier": identifier, "code": code }).to_string();
        let req = hyper::Request::post(self.url.clone())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SendError::Webhook(e.to_string()))?;
        let resp =
            tokio::time::timeout(std::time::Duration::from_secs(10), self.client.request(req))
                .await
                .map_err(|_| SendError::Webhook("timed out".into()))?
                .map_err(|e| SendError::Webhook(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(SendError::Webhook(format!(
                "gateway answered {}",
                resp.status()
            )));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("webhook {}", self.url)
    }
}
