//! The upload type sniffer (`server/src/media/sniff.rs`): `sniff::check(kind, mime, head)` on
//! arbitrary input. Byte 0 chooses the declared kind (`% 4`: image, video, audio, document),
//! byte 1 the length of the declared MIME type (`% 33`), the next that many bytes are the MIME
//! type (lossy UTF-8), and the rest is the head of the upload. Never panics; is deterministic;
//! looks at no more than `SNIFF_LEN` bytes; and what it accepts for a media kind is a type of
//! that kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_protocol::MediaKind;
use tern_server::media::sniff::{self, SNIFF_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let kind = match k % 4 {
        0 => MediaKind::Image,
        1 => MediaKind::Video,
        2 => MediaKind::Audio,
        _ => MediaKind::Document,
    };
    let (len, rest) = match rest.split_first() {
        Some((&n, rest)) => (usize::from(n % 33).min(rest.len()), rest),
        None => (0, rest),
    };
    let (mime, head) = rest.split_at(len);
    let mime = String::from_utf8_lossy(mime);

    let verdict = sniff::check(kind, &mime, head);
    assert_eq!(
        sniff::check(kind, &mime, head),
        verdict,
        "not deterministic"
    );
    assert_eq!(
        sniff::check(kind, &mime, &head[..head.len().min(SNIFF_LEN)]),
        verdict,
        "looked past SNIFF_LEN"
    );
    if let Ok(stored) = &verdict
        && kind != MediaKind::Document
    {
        assert_eq!(
            sniff::kind_of(stored),
            kind,
            "accepted {stored} as {}",
            kind.name()
        );
    }
});
