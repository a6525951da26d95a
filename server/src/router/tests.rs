//! Router unit tests: typing is shed first.

use super::*;
use tern_protocol::TypingEvent;

fn typing() -> EncodedTyping {
    EncodedTyping::new(TypingEvent {
        chat_id: ChatId(1),
        user_id: UserId(2),
        typing: true,
        ttl_ms: 6_000,
    })
    .unwrap_or_else(|| panic!("encodes"))
}

#[test]
fn typing_is_not_queued_in_a_mailbox_over_half_full() {
    let limits = RouterLimits {
        mailbox: 4,
        ..RouterLimits::default()
    };
    let metrics = Metrics::new(1);
    let (router, mut inboxes) = Router::new(1, limits, metrics.clone());
    let user = UserId(7);
    router.attach(user, 0);
    let conn = ConnRef {
        shard: 0,
        conn_id: 1,
    };
    router.post_typing(user, &typing());
    router.post_presence(conn, user, Bytes::from_static(b"p1"));
    router.post_presence(conn, user, Bytes::from_static(b"p2"));
    // Three of four entries taken: typing is dropped, presence still queued.
    router.post_typing(user, &typing());
    router.post_presence(conn, user, Bytes::from_static(b"p3"));
    let inbox = &mut inboxes[0];
    let mut kinds = Vec::new();
    while let Ok(d) = inbox.deliveries.try_recv() {
        kinds.push(d.kind.is_ephemeral());
    }
    assert_eq!(kinds, vec![true, false, false, false]);
    assert!(
        metrics
            .render()
            .contains("tern_typing_total{result=\"dropped_load\"} 1"),
        "{}",
        metrics.render()
    );
    // Nobody connected: nothing is posted at all.
    router.post_typing(UserId(8), &typing());
    assert!(inbox.deliveries.try_recv().is_err());
}

#[test]
fn typing_is_not_queued_over_half_the_byte_budget() {
    let enc = typing();
    let limits = RouterLimits {
        mailbox_bytes: 2 * (enc.frame.len() + enc.datagram.len()),
        ..RouterLimits::default()
    };
    let (router, mut inboxes) = Router::new(1, limits, Metrics::new(1));
    router.attach(UserId(7), 0);
    router.post_typing(UserId(7), &enc);
    router.post_typing(UserId(7), &enc);
    router.post_typing(UserId(7), &enc);
    let mut n = 0;
    while inboxes[0].deliveries.try_recv().is_ok() {
        n += 1;
    }
    assert_eq!(n, 2, "the second fits at exactly half; the third does not");
}
