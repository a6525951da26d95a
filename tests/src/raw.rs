//! A raw protocol client for hostile-input tests: it writes whatever bytes it is told to.

use std::net::SocketAddr;

use std::time::Duration;

use tern_sdk::protocol::codec::{self, FrameDecoder};
use tern_sdk::protocol::{ClientInfo, ErrorCode, Frame, Hello, PROTOCOL_VERSION};
use tern_sdk::{Trust, client_config};

/// A QUIC connection with its control stream.
#[derive(Debug)]
pub struct RawConn {
    /// The connection.
    pub conn: quinn::Connection,
    /// Control stream, send side.
    pub send: quinn::SendStream,
    /// Control stream, receive side.
    pub recv: quinn::RecvStream,
    decoder: FrameDecoder,
    _endpoint: quinn::Endpoint,
}

/// What the server did in answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A frame arrived.
    Frame(Frame),
    /// The connection closed with this application code.
    Closed(Option<ErrorCode>),
}

impl RawConn {
    /// Connects and opens the control stream.
    pub async fn connect(addr: SocketAddr, fingerprint: &str) -> anyhow::Result<RawConn> {
        Self::connect_with(addr, fingerprint, None).await
    }

    /// Connects with a client transport configuration of the test's choosing (e.g. a tiny
    /// receive window, to play a reader that never keeps up).
    pub async fn connect_with(
        addr: SocketAddr,
        fingerprint: &str,
        transport: Option<quinn::TransportConfig>,
    ) -> anyhow::Result<RawConn> {
        let mut cfg = client_config(&Trust::pinned_hex(fingerprint)?)?;
        if let Some(t) = transport {
            cfg.transport_config(std::sync::Arc::new(t));
        }
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(cfg);
        let conn = endpoint.connect(addr, "localhost")?.await?;
        let (send, recv) = conn.open_bi().await?;
        Ok(RawConn {
            conn,
            send,
            recv,
            decoder: FrameDecoder::new(),
            _endpoint: endpoint,
        })
    }

    /// Writes raw bytes on the control stream.
    pub async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.send.write_all(bytes).await?;
        Ok(())
    }

    /// Encodes and writes a frame.
    pub async fn send_frame(&mut self, frame: &Frame) -> anyhow::Result<()> {
        let bytes = codec::encode_to_vec(frame)?;
        self.write(&bytes).await
    }

    /// A `Hello` with the current version and an optional token.
    pub fn hello(auth: Option<String>) -> Frame {
        Frame::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client: ClientInfo {
                name: "raw".into(),
                version: "0".into(),
                platform: "test".into(),
            },
            auth,
            resume: None,
        })
    }

    /// The next frame, or how the connection closed, within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<Outcome> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(f) = self.decoder.next_frame()? {
                return Ok(Outcome::Frame(f));
            }
            match tokio::time::timeout_at(deadline, self.recv.read_chunk(65_536, true)).await {
                Err(_) => anyhow::bail!("nothing from the server in time"),
                Ok(Ok(Some(chunk))) => self.decoder.extend(&chunk.bytes),
                Ok(Ok(None)) | Ok(Err(_)) => {
                    let reason = tokio::time::timeout(timeout, self.conn.closed()).await?;
                    return Ok(Outcome::Closed(match reason {
                        quinn::ConnectionError::ApplicationClosed(c) => {
                            u16::try_from(c.error_code.into_inner())
                                .ok()
                                .map(ErrorCode::from)
                        }
                        _ => None,
                    }));
                }
            }
        }
    }

    /// The application close code once the connection has closed, within `timeout`, without
    /// reading the stream (a client that never reads still learns why it was closed).
    pub async fn closed_code(&self, timeout: Duration) -> anyhow::Result<Option<ErrorCode>> {
        let reason = tokio::time::timeout(timeout, self.conn.closed()).await?;
        Ok(match reason {
            quinn::ConnectionError::ApplicationClosed(c) => {
                u16::try_from(c.error_code.into_inner())
                    .ok()
                    .map(ErrorCode::from)
            }
            _ => None,
        })
    }

    /// Reads until the connection closes; returns the error frame seen (if any) and the close code.
    pub async fn until_closed(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<(Option<ErrorCode>, Option<ErrorCode>)> {
        let mut error = None;
        loop {
            match self.next(timeout).await? {
                Outcome::Frame(Frame::Error(e)) => error = Some(e.code),
                Outcome::Frame(_) => {}
                Outcome::Closed(code) => return Ok((error, code)),
            }
        }
    }
}
