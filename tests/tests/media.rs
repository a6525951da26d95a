//! Media end to end, on both object stores: the data dir's filesystem and a real S3 server
//! (SeaweedFS, started by the test command; `TERN_S3_ENDPOINT`). Every scenario runs once per
//! backend with the same assertions.

#![allow(clippy::unwrap_used)]

use std::io::Cursor;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_sdk::protocol::{ErrorCode, MediaKind, MediaRef, MediaVariant, MessageBody, Thumbnail};
use tern_sdk::{Error, MediaSource, UploadSpec};
use tern_server::Config;
use tern_tests::{TestServer, collect_messages};

const WAIT: Duration = Duration::from_secs(30);

/// The stores to run on: `fs`, and S3 when the test command started SeaweedFS (CI always).
fn backends(test: &str) -> Vec<String> {
    let mut out = vec!["fs".to_owned()];
    match std::env::var("TERN_S3_ENDPOINT") {
        Ok(v) if !v.is_empty() => {
            let bucket = std::env::var("TERN_S3_BUCKET").unwrap_or_else(|_| "tern-media".into());
            let run = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            out.push(format!("s3://{bucket}/{test}-{run}"));
        }
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the S3 media tests: start scripts/services.sh (TERN_S3_ENDPOINT)"
            );
            eprintln!(
                "\n======== S3 SKIPPED: no TERN_S3_ENDPOINT (bash scripts/services.sh start) ========\n"
            );
        }
    }
    out
}

async fn server(store: &str, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let store = store.to_owned();
    TestServer::start_with(move |c| {
        c.media.store = store;
        c.media.part_size = 256 * 1024;
        tweak(c);
    })
    .await
}

fn spec(kind: MediaKind, mime: &str) -> UploadSpec {
    UploadSpec {
        kind,
        mime: mime.into(),
        encrypted: false,
        declared: None,
    }
}

fn png(width: u32, height: u32) -> Bytes {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 7 % 256) as u8,
            (y * 3 % 256) as u8,
            ((x + y) % 256) as u8,
        ])
    });
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    Bytes::from(out)
}

/// Bytes no signature matches (a document of unknown type), different per `seed`.
fn blob(len: usize, seed: u64) -> Bytes {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(b"tern-test-blob\n");
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push((x >> 24) as u8);
    }
    v.truncate(len);
    Bytes::from(v)
}

fn code(e: &Error) -> Option<ErrorCode> {
    e.code()
}

async fn metric(server: &TestServer, name: &str) -> f64 {
    let body = reqwest_like(server.admin_addr()).await;
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// GET /metrics over a plain TCP socket (no HTTP client needed for one request).
async fn reqwest_like(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_send_download_thumbnail_dedupe_and_who_may_read() {
    for store in backends("roundtrip") {
        let server = server(&store, |_| {}).await;
        let (alice, mut bob, chat) = server.pair("+15557000001", "+15557000002").await;
        let carol = server.login("+15557000003").await;
        let image = png(640, 480);

        let up = alice
            .client
            .upload(
                MediaSource::Bytes(image.clone()),
                spec(MediaKind::Image, "image/png"),
                |_, _| {},
            )
            .await
            .unwrap();
        assert_eq!(up.info.size, image.len() as u64, "{store}");
        assert_eq!(up.info.dimensions, Some((640, 480)), "{store}");
        assert!(up.info.thumbnail, "{store}: a plain image gets a thumbnail");
        let id = up.info.media;
        assert_eq!(
            id.0.as_slice(),
            ring::digest::digest(&ring::digest::SHA256, &image).as_ref(),
            "{store}: the media id is the SHA-256"
        );

        // Not referenced yet: only the uploader may read it; anyone else, and a made-up id,
        // get the same NotFound.
        let stranger = bob
            .client
            .download(id, MediaVariant::Original, 1 << 30)
            .await
            .unwrap_err();
        let made_up = bob
            .client
            .download(MediaRef([7; 32]), MediaVariant::Original, 1 << 30)
            .await
            .unwrap_err();
        assert_eq!(code(&stranger), Some(ErrorCode::NotFound), "{store}");
        assert_eq!(
            code(&stranger),
            code(&made_up),
            "{store}: indistinguishable"
        );

        alice
            .client
            .send_media(chat, &up.info, Some("look".into()))
            .await
            .unwrap();
        let got = collect_messages(&mut bob.events, 1, WAIT).await;
        let MessageBody::Media(m) = &got[0].body else {
            panic!("{store}: not a media message: {:?}", got[0].body)
        };
        assert_eq!(
            (m.media, m.kind, m.size),
            (id, MediaKind::Image, image.len() as u64)
        );
        assert_eq!(m.mime, "image/png");
        assert_eq!(m.thumbnail, Thumbnail::Server);
        assert_eq!(m.caption.as_deref(), Some("look"));

        // Now bob is a member of a chat that references it.
        let (info, bytes) = bob
            .client
            .download(id, MediaVariant::Original, 1 << 30)
            .await
            .unwrap();
        assert_eq!(bytes, image, "{store}: byte for byte");
        assert_eq!(info.media, id);
        let (_, thumb) = bob
            .client
            .download(id, MediaVariant::Thumbnail, 1 << 20)
            .await
            .unwrap();
        let t = image::load_from_memory(&thumb).unwrap();
        assert_eq!((t.width(), t.height()), (320, 240), "{store}");
        // Carol is in no such chat.
        let denied = carol
            .client
            .download(id, MediaVariant::Thumbnail, 1 << 20)
            .await
            .unwrap_err();
        assert_eq!(code(&denied), Some(ErrorCode::NotFound), "{store}");
        // Nor may she send it into a chat of hers.
        let carol_chat = carol
            .client
            .open_direct_chat(alice.session.user_id)
            .await
            .unwrap()
            .chat_id;
        let refused = carol
            .client
            .send_media(carol_chat, &up.info, None)
            .await
            .unwrap_err();
        assert_eq!(code(&refused), Some(ErrorCode::NotFound), "{store}");

        // The same bytes again: the uploader sends nothing; another user must send them (proof
        // of possession) but they are stored once.
        let again = alice
            .client
            .upload(
                MediaSource::Bytes(image.clone()),
                spec(MediaKind::Image, "image/png"),
                |_, _| {},
            )
            .await
            .unwrap();
        assert!(
            again.attempts.is_empty(),
            "{store}: nothing re-sent: {:?}",
            again.attempts
        );
        let carols = carol
            .client
            .upload(
                MediaSource::Bytes(image.clone()),
                spec(MediaKind::Image, "image/png"),
                |_, _| {},
            )
            .await
            .unwrap();
        assert_eq!(carols.info.media, id);
        assert_eq!(carols.attempts[0].written, image.len() as u64, "{store}");
        assert_eq!(
            metric(&server, "tern_media_uploads_total{result=\"deduplicated\"}").await,
            1.0,
            "{store}"
        );
        assert_eq!(
            metric(&server, "tern_media_uploads_total{result=\"stored\"}").await,
            1.0,
            "{store}: one stored copy"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_resumes_after_a_forced_disconnect_without_resending() {
    for store in backends("resume") {
        let server = server(&store, |_| {}).await;
        let (alice, mut bob, chat) = server.pair("+15557100001", "+15557100002").await;
        let data = blob(6 * 1024 * 1024, 1);
        let client = alice.client.clone();
        let mut cut = false;
        let up = alice
            .client
            .upload(
                MediaSource::Bytes(data.clone()),
                spec(MediaKind::Document, "application/octet-stream"),
                move |done, _| {
                    if !cut && done > 2 * 1024 * 1024 {
                        cut = true;
                        client.reconnect();
                        // Hold this upload (the callback runs on its task) until the driver,
                        // on the other worker, has dropped the connection: the cut then always
                        // lands mid-upload, however fast the rest would go.
                        std::thread::sleep(Duration::from_millis(300));
                    }
                },
            )
            .await
            .unwrap();
        let a = &up.attempts;
        assert!(
            a.len() >= 2,
            "{store}: the disconnect cut the first stream: {a:?}"
        );
        assert_eq!(a[0].offset, 0);
        let resumed = a[1].offset;
        assert!(resumed > 0, "{store}: the second stream resumed: {a:?}");
        assert!(
            resumed <= a[0].offset + a[0].written,
            "{store}: the server never claims bytes it was not sent: {a:?}"
        );
        let last = a.last().unwrap();
        assert_eq!(
            last.offset + last.written,
            data.len() as u64,
            "{store}: the last stream sent exactly the rest"
        );
        for w in a.windows(2) {
            assert!(
                w[1].offset >= w[0].offset,
                "{store}: no byte before an offset is sent again: {a:?}"
            );
        }
        alice.client.send_media(chat, &up.info, None).await.unwrap();
        collect_messages(&mut bob.events, 1, WAIT).await;
        let (_, bytes) = bob
            .client
            .download(up.info.media, MediaVariant::Original, 1 << 30)
            .await
            .unwrap();
        assert!(
            bytes == data,
            "{store}: the resumed upload is byte for byte the file"
        );
    }
}

/// The CRC-32 of PNG chunks (ISO 3309), to build a valid header by hand.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A small PNG that claims 60,000 × 60,000 pixels (10.8 GB of RGB when decoded).
fn png_bomb() -> Bytes {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut c = kind.to_vec();
        c.extend_from_slice(data);
        out.extend_from_slice(&c);
        out.extend_from_slice(&crc32(&c).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&60_000u32.to_be_bytes());
    ihdr.extend_from_slice(&60_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    // A zlib stream of zeros would inflate to the full size; a few bytes suffice to start.
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    Bytes::from(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_get_typed_errors_and_store_nothing() {
    for store in backends("refusals") {
        let server = server(&store, |c| {
            c.media.limits.max_document_bytes = 1024 * 1024;
            // Enough for the uploads below, not for one more MiB-sized one.
            c.media.limits.daily_upload_bytes = 8 * 1024 * 1024;
        })
        .await;
        let alice = server.login("+15557200001").await;
        let c = &alice.client;
        // Oversize for its kind.
        let big = c
            .upload(
                MediaSource::Bytes(blob(2 * 1024 * 1024, 2)),
                spec(MediaKind::Document, "application/octet-stream"),
                |_, _| {},
            )
            .await
            .unwrap_err();
        assert_eq!(code(&big), Some(ErrorCode::TooLarge), "{store}: {big}");
        // A PNG declared as JPEG, and an HTML page declared as a PNG.
        let png = png(32, 32);
        let lie = c
            .upload(
                MediaSource::Bytes(png.clone()),
                spec(MediaKind::Image, "image/jpeg"),
                |_, _| {},
            )
            .await
            .unwrap_err();
        assert_eq!(
            code(&lie),
            Some(ErrorCode::MediaTypeMismatch),
            "{store}: {lie}"
        );
        let html = Bytes::from_static(b"<html><script>alert(1)</script></html>");
        let lie = c
            .upload(
                MediaSource::Bytes(html),
                spec(MediaKind::Image, "image/png"),
                |_, _| {},
            )
            .await
            .unwrap_err();
        assert_eq!(
            code(&lie),
            Some(ErrorCode::MediaTypeMismatch),
            "{store}: {lie}"
        );
        // A declared id the bytes do not hash to.
        let mut wrong = spec(MediaKind::Image, "image/png");
        wrong.declared = Some(MediaRef([9; 32]));
        let mismatch = c
            .upload(MediaSource::Bytes(png.clone()), wrong, |_, _| {})
            .await
            .unwrap_err();
        assert_eq!(
            code(&mismatch),
            Some(ErrorCode::HashMismatch),
            "{store}: {mismatch}"
        );
        let gone = c
            .download(MediaRef([9; 32]), MediaVariant::Original, 1 << 20)
            .await
            .unwrap_err();
        assert_eq!(
            code(&gone),
            Some(ErrorCode::NotFound),
            "{store}: nothing was stored"
        );
        // A decompression bomb: refused from its header, the server still answers.
        let bomb = c
            .upload(
                MediaSource::Bytes(png_bomb()),
                spec(MediaKind::Image, "image/png"),
                |_, _| {},
            )
            .await
            .unwrap_err();
        assert_eq!(
            code(&bomb),
            Some(ErrorCode::UndecodableMedia),
            "{store}: {bomb}"
        );
        // The connection survived all of it: a good upload still works.
        let ok = c
            .upload(
                MediaSource::Bytes(png),
                spec(MediaKind::Image, "image/png"),
                |_, _| {},
            )
            .await
            .unwrap();
        assert_eq!(ok.info.dimensions, Some((32, 32)));
        // The daily quota (8 MiB, charged per started MiB): a few more and it is used up.
        let mut refused = None;
        for i in 0..12 {
            let r = c
                .upload(
                    MediaSource::Bytes(blob(900 * 1024, 100 + i)),
                    spec(MediaKind::Document, "application/octet-stream"),
                    |_, _| {},
                )
                .await;
            if let Err(e) = r {
                refused = Some(e);
                break;
            }
        }
        let refused = refused.unwrap_or_else(|| panic!("{store}: the quota never ran out"));
        assert_eq!(
            code(&refused),
            Some(ErrorCode::QuotaExceeded),
            "{store}: {refused}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_media_is_opaque_and_carries_the_clients_thumbnail() {
    for store in backends("encrypted") {
        let server = server(&store, |_| {}).await;
        let (alice, mut bob, chat) = server.pair("+15557500001", "+15557500002").await;
        // Ciphertext: no signature, declared as the JPEG it encrypts.
        let ciphertext = blob(300 * 1024, 5);
        let mut spec = spec(MediaKind::Image, "image/jpeg");
        spec.encrypted = true;
        let up = alice
            .client
            .upload(MediaSource::Bytes(ciphertext.clone()), spec, |_, _| {})
            .await
            .unwrap();
        assert!(up.info.encrypted, "{store}");
        assert!(
            !up.info.thumbnail,
            "{store}: no server thumbnail of ciphertext"
        );
        assert_eq!(up.info.dimensions, None, "{store}: nothing decoded");
        let preview = vec![0xc3; 2048];
        let body = MessageBody::Media(tern_sdk::protocol::MediaMessage {
            media: up.info.media,
            kind: MediaKind::Image,
            mime: "image/jpeg".into(),
            size: up.info.size,
            dimensions: Some((4032, 3024)),
            duration_ms: None,
            thumbnail: Thumbnail::Inline(preview.clone()),
            caption: None,
            encrypted: true,
        });
        alice.client.send(chat, body, 77).await.unwrap();
        let got = collect_messages(&mut bob.events, 1, WAIT).await;
        let MessageBody::Media(m) = &got[0].body else {
            panic!("{store}: {:?}", got[0].body)
        };
        assert_eq!(
            m.thumbnail,
            Thumbnail::Inline(preview),
            "{store}: the client's preview, intact"
        );
        assert_eq!(
            m.dimensions,
            Some((4032, 3024)),
            "{store}: the client's dimensions kept"
        );
        assert!(m.encrypted);
        let (_, bytes) = bob
            .client
            .download(up.info.media, MediaVariant::Original, 1 << 20)
            .await
            .unwrap();
        assert!(bytes == ciphertext, "{store}: stored as opaque bytes");
        let none = bob
            .client
            .download(up.info.media, MediaVariant::Thumbnail, 1 << 20)
            .await
            .unwrap_err();
        assert_eq!(code(&none), Some(ErrorCode::NotFound), "{store}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_message_overtakes_a_50_mb_upload_on_the_same_connection() {
    for store in backends("overtake") {
        let server = server(&store, |c| {
            c.media.part_size = 1024 * 1024;
        })
        .await;
        let (alice, mut bob, chat) = server.pair("+15557300001", "+15557300002").await;
        let data = blob(50 * 1024 * 1024, 3);
        let uploader = alice.client.clone();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let mut started = Some(started_tx);
        let upload = tokio::spawn(async move {
            let r = uploader
                .upload(
                    MediaSource::Bytes(data),
                    spec(MediaKind::Document, "application/octet-stream"),
                    move |done, _| {
                        if done > 4 * 1024 * 1024
                            && let Some(tx) = started.take()
                        {
                            let _ = tx.send(());
                        }
                    },
                )
                .await;
            (r, Instant::now())
        });
        started_rx.await.unwrap();
        let mut delivered = Vec::new();
        for i in 0..5 {
            alice
                .client
                .send_text(chat, format!("during {i}"))
                .await
                .unwrap();
            let got = collect_messages(&mut bob.events, 1, WAIT).await;
            delivered.push(Instant::now());
            assert_eq!(got.len(), 1, "{store}");
        }
        let (result, finished) = upload.await.unwrap();
        result.unwrap();
        assert!(
            delivered.iter().all(|t| *t < finished),
            "{store}: every message was delivered while the upload was still running"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_uploads_expire_and_unreferenced_media_is_collected() {
    for store in backends("lifecycle") {
        let server = server(&store, |c| {
            c.media.collect_every_s = 1;
            c.media.grace_s = 2;
            c.media.limits.unfinished_upload_ttl_s = 2;
        })
        .await;
        let (alice, mut bob, chat) = server.pair("+15557400001", "+15557400002").await;
        let c = &alice.client;
        let kept = c
            .upload(
                MediaSource::Bytes(png(40, 30)),
                spec(MediaKind::Image, "image/png"),
                |_, _| {},
            )
            .await
            .unwrap();
        let sent = c.send_media(chat, &kept.info, None).await.unwrap();
        collect_messages(&mut bob.events, 1, WAIT).await;
        let unsent = c
            .upload(
                MediaSource::Bytes(png(41, 30)),
                spec(MediaKind::Image, "image/png"),
                |_, _| {},
            )
            .await
            .unwrap();
        // An upload abandoned halfway.
        let partial = blob(3 * 1024 * 1024, 4);
        let client = c.clone();
        let (cut_tx, cut_rx) = tokio::sync::oneshot::channel();
        let mut cut = Some(cut_tx);
        let abandoned = tokio::spawn(async move {
            client
                .upload(
                    MediaSource::Bytes(partial),
                    spec(MediaKind::Document, "application/octet-stream"),
                    move |done, _| {
                        if done > 1024 * 1024
                            && let Some(tx) = cut.take()
                        {
                            let _ = tx.send(());
                        }
                    },
                )
                .await
        });
        cut_rx.await.unwrap();
        abandoned.abort();

        let deadline = Instant::now() + WAIT;
        while metric(&server, "tern_media_collected_total").await < 1.0
            || metric(&server, "tern_media_uploads_expired_total").await < 1.0
        {
            assert!(
                Instant::now() < deadline,
                "{store}: the collector did not run"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // The unsent upload is gone (sending it now is refused); the sent one stays.
        let refused = c.send_media(chat, &unsent.info, None).await.unwrap_err();
        assert_eq!(code(&refused), Some(ErrorCode::NotFound), "{store}");
        let (_, bytes) = bob
            .client
            .download(kept.info.media, MediaVariant::Original, 1 << 20)
            .await
            .unwrap();
        assert_eq!(
            bytes.len() as u64,
            kept.info.size,
            "{store}: referenced media stays"
        );

        // Deleted for everyone: its reference goes, and after the grace period the media.
        c.delete_for_everyone(chat, sent.seq).await.unwrap();
        let before = metric(&server, "tern_media_collected_total").await;
        let deadline = Instant::now() + WAIT;
        while metric(&server, "tern_media_collected_total").await < before + 1.0 {
            assert!(
                Instant::now() < deadline,
                "{store}: deleted media was not collected"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let gone = bob
            .client
            .download(kept.info.media, MediaVariant::Original, 1 << 20)
            .await
            .unwrap_err();
        assert_eq!(code(&gone), Some(ErrorCode::NotFound), "{store}");
    }
}

/// `kill -9` of the server in the middle of an upload: the parts it committed survive (fsync'd
/// on the filesystem, stored on S3), the restarted server tells the client where to resume, and
/// the stored object is byte for byte the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_resumes_from_its_committed_parts_after_the_server_is_killed() {
    use tern_tests::child::ChildServer;
    for store in backends("killed") {
        tern_tests::init();
        let dir = tempfile::tempdir().unwrap();
        let store_flag = format!("--media-store={store}");
        let mut server = ChildServer::start(dir.path(), &[store_flag.as_str()]).await;
        let cfg = tern_tests::client_config(server.quic, &server.fingerprint());
        let alice = tern_tests::login(cfg, &server.otp_file(), "+15557600001")
            .await
            .unwrap();
        let data = blob(8 * 1024 * 1024, 6);
        let (cut_tx, cut_rx) = tokio::sync::oneshot::channel();
        let mut cut = Some(cut_tx);
        let client = alice.client.clone();
        let source = data.clone();
        let upload = tokio::spawn(async move {
            client
                .upload(
                    MediaSource::Bytes(source),
                    spec(MediaKind::Document, "application/octet-stream"),
                    move |done, _| {
                        if done > 3 * 1024 * 1024
                            && let Some(tx) = cut.take()
                        {
                            let _ = tx.send(());
                            // Hold the upload while the test kills the server.
                            std::thread::sleep(Duration::from_millis(700));
                        }
                    },
                )
                .await
        });
        cut_rx.await.unwrap();
        server.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.restart().await;
        let up = tokio::time::timeout(WAIT * 2, upload)
            .await
            .unwrap_or_else(|_| panic!("{store}: the upload did not finish after the restart"))
            .unwrap()
            .unwrap();
        let a = &up.attempts;
        assert!(
            a.len() >= 2,
            "{store}: the kill cut the first stream: {a:?}"
        );
        assert!(
            a[1].offset > 0,
            "{store}: the restarted server kept the committed parts: {a:?}"
        );
        assert!(a[1].offset <= a[0].written, "{store}: {a:?}");
        let (_, bytes) = alice
            .client
            .download(up.info.media, MediaVariant::Original, 1 << 30)
            .await
            .unwrap();
        assert!(bytes == data, "{store}: byte for byte after the crash");
        alice.client.close().await;
    }
}

/// A download resumes from what a partial file already holds: only the rest is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_resumes_from_a_partial_file() {
    for store in backends("download") {
        let server = server(&store, |_| {}).await;
        let alice = server.login("+15557700001").await;
        let data = blob(3 * 1024 * 1024 + 17, 7);
        let up = alice
            .client
            .upload(
                MediaSource::Bytes(data.clone()),
                spec(MediaKind::Document, "application/octet-stream"),
                |_, _| {},
            )
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partial");
        let have = 1024 * 1024 + 5;
        std::fs::write(&path, &data[..have]).unwrap();
        let before = metric(&server, "tern_media_bytes_total{dir=\"out\"}").await;
        let mut first = None;
        let info = alice
            .client
            .download_to_file(up.info.media, MediaVariant::Original, &path, |done, _| {
                first.get_or_insert(done);
            })
            .await
            .unwrap();
        assert_eq!(info.size, data.len() as u64);
        assert_eq!(
            first,
            Some(have as u64),
            "{store}: it started at the file's length"
        );
        assert!(
            std::fs::read(&path).unwrap() == data,
            "{store}: byte for byte"
        );
        let sent = metric(&server, "tern_media_bytes_total{dir=\"out\"}").await - before;
        assert_eq!(
            sent as usize,
            data.len() - have,
            "{store}: only the missing bytes were sent"
        );
        // An offset past the end is refused, typed.
        let past = dir.path().join("past");
        std::fs::write(&past, vec![0u8; data.len() + 1]).unwrap();
        let e = alice
            .client
            .download_to_file(up.info.media, MediaVariant::Original, &past, |_, _| {})
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::InvalidArgument), "{store}: {e}");
    }
}
