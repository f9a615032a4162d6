//! The checks behind Warren's fuzz targets, one function per target; each `fuzz_targets/*.rs`
//! hands libFuzzer's input straight to one of them. A check panics only when Warren
//! misbehaves: a decoder that panics, or one that disagrees with its own encoder, its
//! allocation-free twin or itself fed the same bytes another way.
//!
//! Input layouts (first bytes choose options, the rest is the data) are described on each
//! function; `examples/seeds.rs` writes seed inputs in those layouts.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use warren::protocol::constants::{
    FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, FRAME_MIN_SIZE, PROTOCOL_HEADER,
};
use warren::protocol::method::{method_name, peek_ids};
use warren::protocol::{
    parse_frame, BasicProperties, ContentHeader, FieldTable, Frame, FrameError, Method,
};
use warren::store::record::{self, Next, Record};

/// The frame-max a frame input runs with, from its first byte.
pub fn frame_max_of(selector: u8) -> u32 {
    match selector % 4 {
        0 => FRAME_MIN_SIZE,
        1 => 131_072,
        2 => 64,
        _ => u32::MAX,
    }
}

/// What the splitter made of a stream: the frames, then how it stopped.
#[derive(Debug, PartialEq)]
struct Split {
    frames: Vec<Frame>,
    end: Result<usize, FrameError>,
}

/// `[frame-max selector, chunking seed, stream...]`; a stream starting with "AMQP" has its
/// 8-byte protocol header skipped first, as a connection does. The stream is split into
/// frames once whole and once fed in chunks (sizes from the seed); both must give the same
/// frames and stop the same way. Every frame's payload then goes through the decoder its
/// type calls for.
pub fn frame(data: &[u8]) {
    let [selector, seed, stream @ ..] = data else {
        return;
    };
    let frame_max = frame_max_of(*selector);
    let stream = match stream.strip_prefix(&PROTOCOL_HEADER[..4]) {
        Some(_) if stream.len() >= PROTOCOL_HEADER.len() => &stream[PROTOCOL_HEADER.len()..],
        _ => stream,
    };

    let whole = split_whole(stream, frame_max);
    let chunked = split_chunked(stream, frame_max, *seed);
    assert_eq!(whole, chunked, "chunking changed what the splitter saw");

    for f in &whole.frames {
        match f.kind {
            FRAME_METHOD => method_payload(f.payload.clone()),
            FRAME_HEADER => content_header(f.payload.clone()),
            FRAME_BODY | FRAME_HEARTBEAT => {}
            other => panic!("parse_frame returned a frame of unknown type {other}"),
        }
    }
}

fn split_whole(stream: &[u8], frame_max: u32) -> Split {
    let mut buf = BytesMut::from(stream);
    let mut frames = Vec::new();
    loop {
        let before = buf.len();
        match parse_frame(&mut buf, frame_max) {
            Ok(Some(f)) => {
                assert!(
                    f.payload.len() as u64 <= u64::from(frame_max),
                    "oversized payload"
                );
                assert_eq!(before - buf.len(), f.payload.len() + 8, "bytes consumed");
                frames.push(f);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete frame consumed bytes");
                assert!(
                    buf.len() < 7
                        || u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize + 8
                            > buf.len(),
                    "a complete frame was reported incomplete"
                );
                return Split {
                    frames,
                    end: Ok(buf.len()),
                };
            }
            Err(e) => {
                let _ = e.to_string();
                return Split {
                    frames,
                    end: Err(e),
                };
            }
        }
    }
}

fn split_chunked(stream: &[u8], frame_max: u32, seed: u8) -> Split {
    let mut rng = u32::from(seed).wrapping_mul(0x9E37_79B9) | 1;
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = stream;
    loop {
        loop {
            match parse_frame(&mut buf, frame_max) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    return Split {
                        frames,
                        end: Err(e),
                    }
                }
            }
        }
        if rest.is_empty() {
            return Split {
                frames,
                end: Ok(buf.len()),
            };
        }
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        // Mostly tiny chunks (every header boundary gets hit), sometimes large ones.
        let max = if seed & 0x80 != 0 {
            4096
        } else {
            1 + usize::from(seed & 15)
        };
        let n = (1 + rng as usize % max).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

/// Decodes a method payload; what decodes must re-encode to as many bytes, and that encoding
/// must decode and re-encode to itself.
pub fn method_payload(payload: Bytes) {
    let ids = peek_ids(&payload);
    let len = payload.len();
    let Ok(m) = Method::decode(payload) else {
        return;
    };
    assert_eq!(ids, Some((m.class_id(), m.method_id())), "peek_ids");
    assert_eq!(method_name(m.class_id(), m.method_id()), Some(m.name()));
    let _ = m.has_content();
    let mut once = BytesMut::new();
    m.encode(&mut once);
    assert_eq!(once.len(), len, "{} re-encoded to another length", m.name());
    let again = Method::decode(once.clone().freeze()).expect("an encoded method decodes");
    let mut twice = BytesMut::new();
    again.encode(&mut twice);
    assert_eq!(once, twice, "{} encoding is not stable", m.name());
}

/// Whole input is a method frame payload (class id, method id, arguments).
pub fn method(data: &[u8]) {
    method_payload(Bytes::copy_from_slice(data));
}

/// Whole input is a field table (with its u32 length prefix) followed by anything. `decode`
/// and `check` must agree on whether it is valid and on where it ends; a decoded table must
/// re-encode to exactly the bytes it took, and decode back to the same encoding.
pub fn table(data: &[u8]) {
    let mut buf = Bytes::copy_from_slice(data);
    let decoded = FieldTable::decode(&mut buf);
    let mut view = data;
    let checked = FieldTable::check(&mut view);
    assert_eq!(
        decoded.is_ok(),
        checked.is_ok(),
        "decode and check disagree: {decoded:?} / {checked:?}"
    );
    let Ok(t) = decoded else {
        return;
    };
    assert_eq!(
        buf.len(),
        view.len(),
        "decode and check end at different bytes"
    );
    let took = data.len() - buf.len();
    let mut once = BytesMut::new();
    t.encode(&mut once);
    assert_eq!(once.len(), took, "a table re-encoded to another length");
    let mut again = once.clone().freeze();
    let t2 = FieldTable::decode(&mut again).expect("an encoded table decodes");
    assert!(again.is_empty(), "an encoded table decoded short");
    let mut twice = BytesMut::new();
    t2.encode(&mut twice);
    assert_eq!(once, twice, "table encoding is not stable");
    let mut view = &once[..];
    FieldTable::check(&mut view).expect("an encoded table checks");
    for (key, value) in &t.0 {
        if let Ok(key) = std::str::from_utf8(key) {
            assert!(t.get(key).is_some());
        }
        let _ = (
            value.as_i64(),
            value.as_bool(),
            value.as_bytes(),
            value.as_table(),
        );
    }
}

/// `[mode, bytes...]`: mode even, the bytes are a property list (flags and properties);
/// odd, a whole content header payload. `check` must accept exactly what `decode` accepts,
/// `peek_delivery_mode` must agree with the decoded delivery-mode, and decode/encode must
/// be stable.
pub fn properties(data: &[u8]) {
    let [mode, raw @ ..] = data else {
        return;
    };
    if mode & 1 == 1 {
        content_header(Bytes::copy_from_slice(raw));
    } else {
        property_list(raw);
    }
}

/// A content header payload: what decodes has properties that decode.
pub fn content_header(payload: Bytes) {
    if let Ok(h) = ContentHeader::decode(payload) {
        let p = h
            .properties()
            .expect("a header that decodes has decodable properties");
        assert_eq!(h.delivery_mode(), p.delivery_mode, "header delivery mode");
        property_list(&h.properties_raw);
    }
}

fn property_list(raw: &[u8]) {
    let decoded = BasicProperties::decode(raw);
    let checked = BasicProperties::check(raw);
    let peeked = BasicProperties::peek_delivery_mode(raw);
    assert_eq!(
        decoded.is_ok(),
        checked.is_ok(),
        "decode and check disagree: {decoded:?} / {checked:?}"
    );
    let Ok(p) = decoded else {
        return;
    };
    assert_eq!(
        peeked, p.delivery_mode,
        "peek_delivery_mode disagrees with decode"
    );
    let mut once = BytesMut::new();
    p.encode(&mut once);
    let p2 = BasicProperties::decode(&once).expect("encoded properties decode");
    BasicProperties::check(&once).expect("encoded properties check");
    let mut twice = BytesMut::new();
    p2.encode(&mut twice);
    assert_eq!(once, twice, "property encoding is not stable");
}

/// Re-encodes a record with the store's own writers.
pub fn encode_record(out: &mut BytesMut, rec: &Record) -> usize {
    match rec {
        Record::Publish {
            queue_id,
            seq,
            redelivered,
            transient,
            msg,
        } => record::put_publish(out, *queue_id, *seq, *redelivered, *transient, msg),
        Record::Ack { queue_id, seq } => record::put_ack(out, *queue_id, *seq),
        other => record::put_def(out, other),
    }
}

/// Frames `body` as a store record (length and CRC), as the store's writers do.
pub fn frame_record(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_be_bytes());
    out.extend_from_slice(body);
}

/// A file's bytes from its fuzz input: as is, or (`framed`) as `[len: u8, body...]...` with
/// each body framed with a correct length and CRC, so the record decoder sees it.
pub fn file_bytes(raw: &[u8], framed: bool) -> Vec<u8> {
    if !framed {
        return raw.to_vec();
    }
    let mut out = Vec::new();
    let mut rest = raw;
    while let [len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        frame_record(&mut out, &tail[..n]);
        rest = &tail[n..];
    }
    out
}

/// `[mode, bytes...]`: the bytes (framed as in [`file_bytes`] when mode is odd) are read as
/// a segment or definitions file is on recovery: record after record, skipping a corrupt
/// stretch to the next intact record. Every record read must re-encode to a record no longer
/// than it that reads back and re-encodes to the same bytes.
pub fn records(data: &[u8]) {
    let [mode, raw @ ..] = data else {
        return;
    };
    let all = Bytes::from(file_bytes(raw, mode & 1 == 1));
    let mut off = 0;
    while off < all.len() {
        match record::next(&all.slice(off..)) {
            Next::Record(rec, len) => {
                assert!(len >= record::HEADER_BYTES && off + len <= all.len());
                record_round_trip(&rec, len);
                let _ = warren::store::body_of(&all.slice(off..off + len));
                off += len;
            }
            Next::End => break,
            Next::Torn => off += 1,
        }
    }
}

fn record_round_trip(rec: &Record, len: usize) {
    let mut once = BytesMut::new();
    let n = encode_record(&mut once, rec);
    assert_eq!(n, once.len());
    // The record decoder ignores bytes after the last field (no `finish`), so a record can
    // re-encode shorter than it was read, never longer.
    assert!(n <= len, "record re-encoded longer: {rec:?}");
    let once = once.freeze();
    let Next::Record(again, n2) = record::next(&once) else {
        panic!("a re-encoded record does not read back: {rec:?}");
    };
    assert_eq!(n2, n);
    let mut twice = BytesMut::new();
    encode_record(&mut twice, &again);
    assert_eq!(once, twice, "record encoding is not stable");
}

/// A scratch data directory for this process (on tmpfs when there is one: recovery syncs).
fn scratch_dir() -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("warren-fuzz-recover-{}", std::process::id()))
}

/// What a recovery found, comparable across runs.
#[derive(Debug, Default, PartialEq)]
struct Found {
    /// (name, queue id, auto-delete, argument count) of every queue.
    queues: Vec<(Vec<u8>, u64, bool, usize)>,
    /// (queue name, seq, exchange, routing key, properties, body) of every message.
    messages: Vec<(Vec<u8>, u64, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>)>,
    topology: usize,
}

/// `[shards, segment size, budget, file...]` with each file `[what, len: u16, bytes...]`:
/// `what` bits 0-3 say defs.log (0) or segment id 1-15, bits 4-5 the shard directory,
/// bit 6 framed records (see [`file_bytes`]). A data directory of these files is recovered;
/// recovery must not fail or panic, every message it hands out must be at its location on
/// disk, and a second recovery must find the same queues and messages.
pub fn recover(data: &[u8]) {
    let [shards, size, budget, rest @ ..] = data else {
        return;
    };
    let mut rest = rest;
    let shards = 1 + usize::from(shards % 4);
    let segment_size = 4096 << (size % 8);
    let budget = match budget % 4 {
        0 => 0,
        1 => 64,
        2 => 4096,
        _ => u64::MAX,
    };
    let dir = scratch_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    while let [what, hi, lo, tail @ ..] = rest {
        let n = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let shard = warren::store::shard_dir(&dir, usize::from(what >> 4 & 3));
        std::fs::create_dir_all(&shard).expect("shard dir");
        let path = match what & 15 {
            0 => shard.join(warren::store::DEFS_FILE),
            id => warren::store::segment_path(&shard, u32::from(id)),
        };
        let bytes = file_bytes(&tail[..n], what & 0x40 != 0);
        std::fs::write(path, bytes).expect("write input file");
        rest = &tail[n..];
    }

    let first = recover_checked(&dir, shards, segment_size, budget);
    let second = recover_checked(&dir, shards, segment_size, u64::MAX);
    assert_eq!(first, second, "a second recovery found something else");
    let _ = std::fs::remove_dir_all(&dir);
}

fn recover_checked(dir: &Path, shards: usize, segment_size: u64, budget: u64) -> Found {
    use warren::store::recover::recover;
    let r = recover(dir, shards, segment_size, budget).expect("recovery fails on bad data");
    assert_eq!(r.shards.len(), shards);
    let mut found = Found {
        topology: r.topology.len(),
        ..Found::default()
    };
    let mut total = 0;
    for (i, start) in r.shards.iter().enumerate() {
        let mut resident = 0;
        for q in &start.queues {
            found.queues.push((
                q.name.to_vec(),
                q.queue_id,
                q.auto_delete,
                q.arguments.len(),
            ));
            assert_eq!(
                warren::ids::queue_shard_bytes(b"/", &q.name, shards),
                i,
                "a queue recovered on a shard that does not own it"
            );
            for (seq, m) in &q.messages {
                assert!(*seq < q.next_seq, "next_seq would reuse a seq");
                let path =
                    warren::store::segment_path(&warren::store::shard_dir(dir, i), m.loc.seg);
                let file = std::fs::read(&path).expect("a recovered message's segment exists");
                let (off, len) = (m.loc.off as usize, m.loc.len as usize);
                let frame = Bytes::from(file[off..off + len].to_vec());
                let Next::Record(
                    Record::Publish {
                        queue_id,
                        seq: s,
                        msg,
                        ..
                    },
                    n,
                ) = record::next(&frame)
                else {
                    panic!("no publish record where a recovered message is");
                };
                assert_eq!((queue_id, s, n), (q.queue_id, *seq, len));
                if m.loc.paged {
                    assert!(m.body.is_empty());
                } else {
                    assert_eq!(m.body, msg.body, "resident body differs from disk");
                    resident += m.body.len() as u64;
                }
                assert_eq!(m.properties, msg.properties);
                found.messages.push((
                    q.name.to_vec(),
                    *seq,
                    msg.exchange.to_vec(),
                    msg.routing_key.to_vec(),
                    msg.properties.to_vec(),
                    msg.body.to_vec(),
                ));
                total += 1;
            }
        }
        assert_eq!(resident, start.resident_bytes, "resident bytes");
        assert!(resident <= budget, "over the memory budget");
    }
    assert_eq!(total, r.messages as usize);
    found.queues.sort();
    found.messages.sort();
    found
}
