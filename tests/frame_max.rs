//! Frames as large as RabbitMQ takes them: a payload of exactly frame_max bytes (a whole
//! frame of frame_max + 8) is accepted, as RabbitMQ accepts it, since rabbitpy and AMQPStorm
//! fill every body frame of a large message to exactly frame_max; one byte more is a frame
//! error.

mod support;

use support::broker::Broker;
use support::raw::*;

/// The frames of a publish of `body` whose body frames carry `per_frame` bytes each.
fn publish_in_frames(queue: &str, body: &[u8], per_frame: usize) -> Vec<u8> {
    let args = Args::new().u16(0).short("").short(queue).u8(0);
    let mut bytes = method_frame(1, BASIC_PUBLISH, args);
    bytes.extend(frame(
        FRAME_HEADER,
        1,
        &content_header(body.len() as u64, None),
    ));
    for chunk in body.chunks(per_frame) {
        bytes.extend(frame(FRAME_BODY, 1, chunk));
    }
    bytes
}

#[test]
fn body_frames_of_exactly_frame_max_bytes_are_accepted() {
    let broker = Broker::start(&[]);
    let mut client = Client::connect_with_channel(broker.port());
    let queue = broker.queue_name("frame-max");
    client.queue_declare(1, &queue);
    let body: Vec<u8> = (0..3 * FRAME_MAX as usize + 123)
        .map(|i| (i % 251) as u8)
        .collect();
    client.write_all(&publish_in_frames(&queue, &body, FRAME_MAX as usize));
    client.send(1, BASIC_GET, Args::new().u16(0).short(&queue).bits(&[true]));
    let got = client.expect(1, BASIC_GET_OK);
    assert_eq!(
        got.body.as_deref().map(<[u8]>::len),
        Some(body.len()),
        "expected the {}-byte message back whole, got {}",
        body.len(),
        got.describe()
    );
    assert!(
        got.body.as_deref() == Some(&body[..]),
        "expected the body back byte for byte"
    );
}

#[test]
fn a_frame_one_byte_over_frame_max_is_a_frame_error() {
    let broker = Broker::start(&[]);
    let mut client = Client::connect_with_channel(broker.port());
    let queue = broker.queue_name("frame-max-over");
    client.queue_declare(1, &queue);
    let body = vec![7u8; FRAME_MAX as usize + 1];
    client.write_all(&publish_in_frames(&queue, &body, FRAME_MAX as usize + 1));
    let (code, _, _) = client.expect_connection_close();
    assert_eq!(
        code, FRAME_ERROR,
        "expected 501 FRAME_ERROR for a payload of frame_max + 1"
    );
}
