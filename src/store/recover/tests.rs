//! Recovery across shard counts, with acked, transient, deleted and torn records.

use std::fs;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};

use super::recover;
use crate::ids::queue_shard_bytes;
use crate::message::Message;
use crate::protocol::FieldTable;
use crate::store::record::{self, Record};
use crate::store::{segment_path, shard_dir, DEFS_FILE};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "warren-recover-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn message(body: &str) -> Message {
    Message::new(
        Bytes::new(),
        Bytes::from_static(b"q"),
        Bytes::from_static(b"\0\0"),
        Bytes::from(body.to_string()),
        true,
    )
}

#[test]
fn recovers_live_messages_in_order_across_shard_counts_and_truncates_a_torn_tail() {
    let data = temp_dir("basic");
    let old = shard_dir(&data, 3); // written by a broker that had 4 shards
    fs::create_dir_all(&old).expect("shard dir");
    let mut defs = BytesMut::new();
    for (queue_id, name) in [(7, "q"), (8, "gone")] {
        record::put_def(
            &mut defs,
            &Record::Queue {
                queue_id,
                vhost: Bytes::from_static(b"/"),
                name: Bytes::from_static(name.as_bytes()),
                auto_delete: false,
                arguments: FieldTable::default(),
            },
        );
    }
    record::put_def(&mut defs, &Record::QueueGone { queue_id: 8 });
    fs::write(old.join(DEFS_FILE), &defs).expect("defs");
    let mut seg = BytesMut::new();
    for seq in [3u64, 1, 2, 4] {
        record::put_publish(&mut seg, 7, seq, false, false, &message(&format!("m{seq}")));
    }
    record::put_publish(&mut seg, 7, 5, false, true, &message("transient"));
    record::put_publish(&mut seg, 8, 1, false, false, &message("of a deleted queue"));
    record::put_ack(&mut seg, 7, 2);
    let whole = seg.len();
    record::put_publish(&mut seg, 7, 6, false, false, &message("torn"));
    let torn_at = whole + 10;
    fs::write(segment_path(&old, 5), &seg[..torn_at]).expect("segment");

    let recovered = recover(&data, 2, 1 << 20, u64::MAX).expect("recovery");
    assert_eq!(recovered.messages, 3);
    let owner = queue_shard_bytes(b"/", b"q", 2);
    let q = &recovered.shards[owner].queues[0];
    assert_eq!(&q.name[..], b"q");
    let bodies: Vec<&[u8]> = q.messages.iter().map(|(_, m)| &m.body[..]).collect();
    assert_eq!(
        bodies,
        vec![&b"m1"[..], b"m3", b"m4"],
        "acked, transient and torn ones go"
    );
    assert!(q.next_seq > 5, "seqs are never reused");
    assert!(
        !old.exists(),
        "the directory of a shard that no longer exists goes"
    );

    // A second start finds the same, from the copies.
    let again = recover(&data, 2, 1 << 20, 0).expect("second recovery");
    let q = &again.shards[owner].queues[0];
    assert_eq!(q.messages.len(), 3);
    assert!(
        q.messages
            .iter()
            .all(|(_, m)| m.loc.paged && m.body.is_empty()),
        "with no memory budget every body stays on disk"
    );
    let _ = fs::remove_dir_all(&data);
}

#[test]
fn a_corrupt_record_in_the_middle_loses_only_itself() {
    let data = temp_dir("middle");
    let dir = shard_dir(&data, 0);
    fs::create_dir_all(&dir).expect("shard dir");
    let mut defs = BytesMut::new();
    record::put_def(
        &mut defs,
        &Record::Queue {
            queue_id: 7,
            vhost: Bytes::from_static(b"/"),
            name: Bytes::from_static(b"q"),
            auto_delete: false,
            arguments: FieldTable::default(),
        },
    );
    fs::write(dir.join(DEFS_FILE), &defs).expect("defs");
    let mut seg = BytesMut::new();
    record::put_publish(&mut seg, 7, 1, false, false, &message("before"));
    let damaged_from = seg.len();
    record::put_publish(&mut seg, 7, 2, false, false, &message("damaged"));
    let damaged_to = seg.len();
    record::put_publish(&mut seg, 7, 3, false, false, &message("after-1"));
    seg.extend_from_slice(&[0u8; 100]); // a hole left by a failed write
    record::put_publish(&mut seg, 7, 4, false, false, &message("after-2"));
    for b in &mut seg[damaged_from + 10..damaged_to] {
        *b ^= 0x5a;
    }
    fs::write(segment_path(&dir, 1), &seg).expect("segment");

    let recovered = recover(&data, 1, 1 << 20, u64::MAX).expect("recovery");
    let q = &recovered.shards[0].queues[0];
    let bodies: Vec<&[u8]> = q.messages.iter().map(|(_, m)| &m.body[..]).collect();
    assert_eq!(
        bodies,
        vec![&b"before"[..], b"after-1", b"after-2"],
        "expected only the damaged record lost, the intact ones after it recovered"
    );
    let _ = fs::remove_dir_all(&data);
}

#[test]
fn a_record_with_a_seq_no_queue_reaches_is_skipped_not_a_panic() {
    // Found by the `recover` fuzz target: a CRC-valid publish (or ack) of seq u64::MAX made
    // the queue's next seq overflow.
    let data = temp_dir("max-seq");
    let dir = shard_dir(&data, 0);
    fs::create_dir_all(&dir).expect("shard dir");
    let mut defs = BytesMut::new();
    record::put_def(
        &mut defs,
        &Record::Queue {
            queue_id: 7,
            vhost: Bytes::from_static(b"/"),
            name: Bytes::from_static(b"q"),
            auto_delete: false,
            arguments: FieldTable::default(),
        },
    );
    fs::write(dir.join(DEFS_FILE), &defs).expect("defs");
    let mut seg = BytesMut::new();
    record::put_publish(&mut seg, 7, 1, false, false, &message("kept"));
    record::put_publish(&mut seg, 7, u64::MAX, false, false, &message("impossible"));
    record::put_ack(&mut seg, 7, u64::MAX);
    fs::write(segment_path(&dir, 1), &seg).expect("segment");

    let recovered = recover(&data, 1, 1 << 20, u64::MAX).expect("recovery");
    let q = &recovered.shards[0].queues[0];
    let bodies: Vec<&[u8]> = q.messages.iter().map(|(_, m)| &m.body[..]).collect();
    assert_eq!(
        bodies,
        vec![&b"kept"[..]],
        "the impossible record is dropped"
    );
    assert_eq!(q.next_seq, 2);
    let _ = fs::remove_dir_all(&data);
}

#[test]
fn a_segment_named_with_the_last_id_is_an_error_not_a_wrap() {
    // A segment file named with id u32::MAX left no id for the next segment: it wrapped to 0.
    let data = temp_dir("last-id");
    let dir = shard_dir(&data, 0);
    fs::create_dir_all(&dir).expect("shard dir");
    fs::write(segment_path(&dir, u32::MAX), b"").expect("segment");
    let err = recover(&data, 1, 1 << 20, u64::MAX)
        .err()
        .expect("recovery refuses the last id");
    assert!(err.to_string().contains("last there is"), "{err}");
    let _ = fs::remove_dir_all(&data);
}
