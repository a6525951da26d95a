//! Writes the seed corpora of every target into `fuzz/corpus/<target>/` from the golden vectors
//! of `protocol/tests/golden.rs` (and, for `tokens`, a few well-formed tokens). Run from fuzz/:
//! `cargo run --example seed-corpora`. Deterministic: file names are the vector names.

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tern_fuzz::session_ops::{ADVANCE, AUTH, FRAME, TIMEOUT};
use tern_fuzz::{golden_vectors, payload};
use tern_protocol::codec::{self, CodecError};
use tern_protocol::limits::{MAX_FRAME_LEN, MAX_TEXT_LEN};
use tern_protocol::{Frame, Message, MessageBody, Response};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let file = dir.join(name.replace('/', "-"));
    fs::write(&file, bytes).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
}

fn frame_op(out: &mut Vec<u8>, framed: &[u8]) {
    let p = payload(framed);
    out.push(FRAME);
    out.extend_from_slice(&(p.len() as u16).to_le_bytes());
    out.extend_from_slice(p);
}

/// A `Messages` answer of texts at the text limit, as close to `MAX_FRAME_LEN` as it gets,
/// built from the message of a golden `Messages` vector.
fn max_frame(vectors: &[(String, Vec<u8>)]) -> Vec<u8> {
    let base = vectors
        .iter()
        .find_map(|(_, framed)| match codec::decode_payload(payload(framed)) {
            Ok(Frame::Response {
                result: Ok(Response::Messages(m)),
                ..
            }) => m.into_iter().next(),
            _ => None,
        })
        .expect("a golden Messages vector");
    let msg = |len: usize| Message {
        body: MessageBody::Text("m".repeat(len)),
        ..base.clone()
    };
    let frame = |last: usize| Frame::Response {
        req_id: 1,
        result: Ok(Response::Messages(vec![
            msg(MAX_TEXT_LEN),
            msg(MAX_TEXT_LEN),
            msg(MAX_TEXT_LEN),
            msg(last),
        ])),
    };
    let mut last = MAX_TEXT_LEN;
    loop {
        match codec::encode_to_vec(&frame(last)) {
            Ok(bytes) => return bytes,
            Err(CodecError::TooLarge { len, max }) => last -= (len - u64::from(max)) as usize,
            Err(e) => panic!("{e}"),
        }
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let golden = root.join("../protocol/tests/golden.rs");
    let src = fs::read_to_string(&golden).expect("read golden.rs");
    let vectors = golden_vectors(&src).unwrap_or_else(|e| panic!("golden.rs: {e}"));
    let corpus = root.join("corpus");
    let dirs = ["frame_stream", "decode_payload", "session", "tokens"].map(|t| {
        let d = corpus.join(t);
        // Seeds only: what a fuzzing run adds is not kept (see README.md).
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("mkdir");
        d
    });
    let [stream_dir, payload_dir, session_dir, tokens_dir] = &dirs;
    let hello = &vectors
        .iter()
        .find(|(n, _)| n == "hello/v2")
        .expect("hello/v2 vector")
        .1;
    let mut all = Vec::new();
    for (name, framed) in &vectors {
        // One chunk, then byte by byte.
        let mut one = vec![0u8];
        one.extend_from_slice(framed);
        write(stream_dir, name, &one);
        write(payload_dir, name, payload(framed));
        // Hello, the frame, login, the frame again, then the clock past every deadline.
        let mut ops = 120u64.to_le_bytes().to_vec();
        frame_op(&mut ops, hello);
        frame_op(&mut ops, framed);
        ops.extend_from_slice(&[TIMEOUT, AUTH, 7, 0, 9]);
        frame_op(&mut ops, framed);
        ops.extend_from_slice(&[ADVANCE, 0xff, 0xff, TIMEOUT]);
        write(session_dir, name, &ops);
        all.extend_from_slice(framed);
    }
    // Frames at the size limit, so the runs reach the buffer bound (libFuzzer's inputs grow no
    // longer than the largest seed): one whole, two in large and tiny chunks, and a prefix
    // announcing one byte more than the limit.
    let max = max_frame(&vectors);
    let mut whole = vec![0u8];
    whole.extend_from_slice(&max);
    write(stream_dir, "max-frame", &whole);
    let mut chunked = vec![2u8, 200, 5];
    chunked.extend_from_slice(&max);
    chunked.extend_from_slice(&max);
    write(stream_dir, "max-frame-twice-chunked", &chunked);
    write(payload_dir, "max-frame", payload(&max));
    let mut over = vec![0u8, 0x81, 0x80, 0x04];
    over.extend_from_slice(&[0u8; 64]);
    write(stream_dir, "over-limit-prefix", &over);

    let mut bytewise = vec![1u8, 0];
    bytewise.extend_from_slice(&all);
    write(stream_dir, "all-bytewise", &bytewise);
    let mut mixed = vec![3u8, 6, 200, 130];
    mixed.extend_from_slice(&all);
    write(stream_dir, "all-mixed", &mixed);
    // A session that never says Hello, and one that says Hello and never logs in.
    write(
        session_dir,
        "no-hello",
        &[120, 0, 0, 0, 0, 0, 0, 0, ADVANCE, 0xe8, 0x03, TIMEOUT],
    );
    let mut idle = 120u64.to_le_bytes().to_vec();
    frame_op(&mut idle, hello);
    idle.extend_from_slice(&[ADVANCE, 0x10, 0x27, TIMEOUT, ADVANCE, 0x10, 0x27, TIMEOUT]);
    write(session_dir, "hello-then-idle", &idle);
    // The auth timeout that overflowed `Instant` (found by this target; see session/tests.rs).
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    frame_op(&mut huge, hello);
    huge.extend_from_slice(&[ADVANCE, 0xff, 0xff, TIMEOUT]);
    write(session_dir, "huge-auth-timeout", &huge);

    // tokens: mode 0 raw strings, mode 1 a real token (no flips, then some), mode 2 signed JSON.
    let mut raw = vec![0u8];
    raw.extend_from_slice(b"not.a.jwt");
    write(tokens_dir, "raw-not-a-jwt", &raw);
    let mut rt = vec![0u8];
    rt.extend_from_slice(b"rt1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    write(tokens_dir, "raw-refresh", &rt);
    let header = br#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#;
    let claims =
        br#"{"iss":"tern","aud":"tern-chat","sub":"7","did":9,"iat":1700000000,"exp":4102444800}"#;
    let mut jwt = vec![0u8];
    jwt.extend_from_slice(
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims),
            URL_SAFE_NO_PAD.encode([0u8; 32])
        )
        .as_bytes(),
    );
    write(tokens_dir, "raw-badly-signed", &jwt);
    write(tokens_dir, "issued", &[1, 7, 0, 0, 0, 9, 0, 0, 0, 0, 0]);
    write(
        tokens_dir,
        "issued-expired",
        &[1, 7, 0, 0, 0, 9, 0, 0, 0, 0xff, 0xff],
    );
    write(
        tokens_dir,
        "issued-flipped",
        &[1, 7, 0, 0, 0, 9, 0, 0, 0, 0, 0, 200, 1, 100, 4],
    );
    let mut signed = vec![2u8, header.len() as u8];
    signed.extend_from_slice(header);
    signed.extend_from_slice(claims);
    write(tokens_dir, "signed-valid", &signed);
    let header0 = br#"{"alg":"HS256","kid":"k0"}"#;
    let mut signed0 = vec![2u8, header0.len() as u8];
    signed0.extend_from_slice(header0);
    signed0.extend_from_slice(claims);
    write(tokens_dir, "signed-old-key", &signed0);

    assert!(
        max.len() > MAX_FRAME_LEN as usize - 16,
        "max frame is {} bytes",
        max.len()
    );
    println!(
        "wrote {} golden vectors into {}",
        vectors.len(),
        corpus.display()
    );
}
