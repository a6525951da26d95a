//! Codec throughput: encoding and decoding the frames on the hot path.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tern_protocol::codec::{FrameDecoder, encode_to_vec};
use tern_protocol::{
    ChatId, DeviceId, Event, Frame, Message, MessageBody, MessageId, Request, Update, UpdateKind,
    UserId,
};

fn send_frame(len: usize) -> Frame {
    Frame::Request {
        req_id: 42,
        body: Request::SendMessage {
            chat_id: ChatId(123_456),
            client_msg_id: 0xdead_beef_cafe,
            body: MessageBody::Text("x".repeat(len)),
        },
    }
}

fn event_frame(len: usize) -> Frame {
    Frame::Event(Event::Update(Update {
        pts: 987_654,
        kind: UpdateKind::Message(Message {
            chat_id: ChatId(123_456),
            seq: 77_777,
            msg_id: MessageId(5_000_000),
            sender: UserId(1_000_001),
            sender_device: DeviceId(2_000_002),
            client_msg_id: 0xdead_beef_cafe,
            ts_ms: 1_795_000_000_000,
            body: MessageBody::Text("x".repeat(len)),
        }),
    }))
}

fn codec(c: &mut Criterion) {
    for (name, frame) in [
        ("send_200B", send_frame(200)),
        ("event_200B", event_frame(200)),
        ("event_4KiB", event_frame(4096)),
    ] {
        let bytes = encode_to_vec(&frame).unwrap_or_default();
        let mut g = c.benchmark_group(format!("codec/{name}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("encode", |b| b.iter(|| encode_to_vec(black_box(&frame))));
        g.bench_function("decode", |b| {
            b.iter(|| {
                let mut d = FrameDecoder::new();
                d.extend(black_box(&bytes));
                d.next_frame()
            })
        });
        g.finish();
    }
    // A stream of 64 frames decoded from one buffer, as the server reads them.
    let frame = send_frame(200);
    let mut stream = Vec::new();
    for _ in 0..64 {
        stream.extend(encode_to_vec(&frame).unwrap_or_default());
    }
    let mut g = c.benchmark_group("codec/stream_64x200B");
    g.throughput(Throughput::Elements(64));
    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut d = FrameDecoder::new();
            d.extend(black_box(&stream));
            let mut n = 0;
            while let Ok(Some(_)) = d.next_frame() {
                n += 1;
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
