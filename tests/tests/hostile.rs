//! Hostile and broken input: each gets a typed error and a close, and other clients keep being
//! served meanwhile. Non-members learn nothing about chats.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tern_sdk::protocol::{
    ChatId, ClientInfo, ErrorCode, Frame, Hello, MessageBody, PROTOCOL_VERSION, Request,
    SyncCursor, limits,
};
use tern_tests::raw::RawConn;
use tern_tests::{TestServer, collect_messages};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_while_others_are_served() {
    let server = TestServer::start().await;
    let (a, mut b, chat) = server.pair("+15550002001", "+15550002002").await;

    // Garbage bytes: a valid length, then bytes that are no frame.
    let mut raw = RawConn::connect(server.addr, &server.fingerprint)
        .await
        .unwrap();
    raw.write(&[5, 0xff, 0xfe, 0xfd, 0xfc, 0xfb]).await.unwrap();
    assert_eq!(
        raw.until_closed(WAIT).await.unwrap(),
        (Some(ErrorCode::BadFrame), Some(ErrorCode::BadFrame))
    );

    // An oversized frame: the length prefix alone is refused, nothing is buffered.
    let mut raw = RawConn::connect(server.addr, &server.fingerprint)
        .await
        .unwrap();
    let mut prefix = Vec::new();
    let mut n = limits::MAX_FRAME_LEN + 1;
    while n >= 0x80 {
        prefix.push((n as u8) | 0x80);
        n >>= 7;
    }
    prefix.push(n as u8);
    raw.write(&prefix).await.unwrap();
    assert_eq!(
        raw.until_closed(WAIT).await.unwrap(),
        (Some(ErrorCode::TooLarge), Some(ErrorCode::TooLarge))
    );

    // A malformed length prefix (more than five continuation bytes).
    let mut raw = RawConn::connect(server.addr, &server.fingerprint)
        .await
        .unwrap();
    raw.write(&[0xff; 8]).await.unwrap();
    assert_eq!(
        raw.until_closed(WAIT).await.unwrap().1,
        Some(ErrorCode::BadFrame)
    );

    // A wrong protocol version.
    let mut raw = RawConn::connect(server.addr, &server.fingerprint)
        .await
        .unwrap();
    let hello = Frame::Hello(Hello {
        protocol_version: PROTOCOL_VERSION + 41,
        client: ClientInfo {
            name: "old".into(),
            version: "0".into(),
            platform: "test".into(),
        },
        auth: None,
        resume: None,
    });
    raw.send_frame(&hello).await.unwrap();
    assert_eq!(
        raw.until_closed(WAIT).await.unwrap(),
        (
            Some(ErrorCode::UnsupportedVersion),
            Some(ErrorCode::UnsupportedVersion)
        )
    );

    // A request before Hello.
    let mut raw = RawConn::connect(server.addr, &server.fingerprint)
        .await
        .unwrap();
    raw.send_frame(&Frame::Request {
        req_id: 1,
        body: Request::Ping,
    })
    .await
    .unwrap();
    assert_eq!(
        raw.until_closed(WAIT).await.unwrap().1,
        Some(ErrorCode::HandshakeRequired)
    );

    // A text over the limit inside an otherwise valid frame.
    let mut raw = RawConn::connect(server.addr, &server.fingerprint)
        .await
        .unwrap();
    raw.send_frame(&RawConn::hello(None)).await.unwrap();
    let big = Frame::Request {
        req_id: 2,
        body: Request::SendMessage {
            chat_id: chat,
            client_msg_id: 1,
            body: MessageBody::Text("x".repeat(limits::MAX_TEXT_LEN + 1)),
        },
    };
    raw.send_frame(&big).await.unwrap();
    assert_eq!(
        raw.until_closed(WAIT).await.unwrap().1,
        Some(ErrorCode::TooLarge)
    );

    // Meanwhile, the honest clients are still served.
    let sent = a.client.send_text(chat, "still here").await.unwrap();
    let got = collect_messages(&mut b.events, 1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].seq, sent.seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_members_get_the_same_answer_as_for_a_missing_chat() {
    let server = TestServer::start().await;
    let a = server.login("+15550002011").await;
    let b = server.login("+15550002012").await;
    let eve = server.login("eve@example.org").await;
    let chat = a
        .client
        .open_direct_chat(b.session.user_id)
        .await
        .unwrap()
        .chat_id;
    a.client.send_text(chat, "private").await.unwrap();
    let missing = ChatId(chat.0 + 1_000);

    let requests = |c: ChatId| {
        vec![
            Request::SendMessage {
                chat_id: c,
                client_msg_id: 1,
                body: MessageBody::Text("hi".into()),
            },
            Request::GetMessages {
                chat_id: c,
                from_seq: 1,
                limit: 10,
            },
            Request::MarkRead {
                chat_id: c,
                upto_seq: 1,
            },
            Request::Ack {
                chat_id: c,
                upto_seq: 1,
            },
            Request::GetReceipts { chat_id: c },
        ]
    };
    for (real, absent) in requests(chat).into_iter().zip(requests(missing)) {
        let name = real.name();
        let on_real = eve.client.request(real).await.unwrap_err();
        let on_absent = eve.client.request(absent).await.unwrap_err();
        assert_eq!(on_real.code(), Some(ErrorCode::NotFound), "{name}");
        assert_eq!(
            on_real, on_absent,
            "{name}: a non-member must not learn the chat exists"
        );
    }
    // Sends to a chat one is not in are refused through the SDK's outbox as well.
    let err = eve.client.send_text(chat, "let me in").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    // Eve's own sync shows nothing of the chat.
    let page = eve
        .client
        .request(Request::Sync {
            after: SyncCursor::default(),
            limit: 100,
        })
        .await
        .unwrap();
    let text = format!("{page:?}");
    assert!(!text.contains("private"), "sync leaked a message: {text}");
    assert_eq!(eve.client.chats().await.unwrap(), vec![]);
    // And nothing she tried was stored.
    assert_eq!(b.client.messages(chat, 1, 10).await.unwrap().len(), 1);
}
