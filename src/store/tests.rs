//! Unit tests of the store's bookkeeping: segment deletion and group-commit waiters.

use super::*;
use std::future::Future;

fn msg(body: &'static [u8]) -> Message {
    Message::new(
        Bytes::new(),
        Bytes::from_static(b"q"),
        Bytes::from_static(b"\0\0"),
        Bytes::from_static(body),
        true,
    )
}

fn store(segment_size: u64) -> Store<u64> {
    Store::new(
        PathBuf::from("/nonexistent"),
        segment_size,
        SyncPolicy::Always,
        1,
        0,
        FxHashMap::default(),
    )
}

#[test]
fn a_segment_goes_once_nothing_in_it_is_live() {
    let mut s = store(4096);
    let a = s.append_publish(1, 1, false, false, &msg(&[0; 3000]));
    let b = s.append_publish(1, 2, false, false, &msg(&[0; 3000]));
    assert_eq!((a.seg, b.seg), (1, 2), "the second record starts segment 2");
    s.append_ack(1, 1, a);
    // The ack lives in segment 2, segment 1 has nothing live: it goes.
    assert_eq!(s.next_batch().expect("a batch").delete, vec![1]);
    let c = s.append_publish(1, 3, false, false, &msg(&[0; 3000]));
    assert_eq!(c.seg, 3);
    s.append_ack(1, 2, b);
    // Segment 2 is empty now, and what its ack cancelled (segment 1) is gone.
    assert_eq!(s.next_batch().expect("a batch").delete, vec![2]);
}

#[test]
fn a_segment_whose_acks_still_matter_stays() {
    let mut s = store(4096);
    let a1 = s.append_publish(1, 1, false, false, &msg(&[0; 1000]));
    let a2 = s.append_publish(1, 2, false, false, &msg(&[0; 1000]));
    let b = s.append_publish(1, 3, false, false, &msg(&[0; 3000]));
    assert_eq!((a1.seg, a2.seg, b.seg), (1, 1, 2));
    s.append_ack(1, 1, a1); // into segment 2, cancelling a message of segment 1
    let c = s.append_publish(1, 4, false, false, &msg(&[0; 3000]));
    assert_eq!(c.seg, 3);
    s.append_ack(1, 3, b);
    // Segment 2 has nothing live, but its ack still cancels a1 while segment 1 exists.
    assert!(s.next_batch().expect("a batch").delete.is_empty());
    s.append_ack(1, 2, a2);
    let mut deleted = s.next_batch().expect("a batch").delete;
    deleted.sort_unstable();
    assert_eq!(deleted, vec![1, 2]);
}

#[test]
fn waiters_are_released_in_order_after_sync() {
    let mut s = store(1 << 20);
    assert!(s.after_sync(0).is_some(), "nothing pending");
    s.append_publish(1, 1, false, false, &msg(b"a"));
    assert!(s.after_sync(1).is_none());
    let batch = s.next_batch().expect("a batch");
    assert!(batch.sync);
    s.append_publish(1, 2, false, false, &msg(b"b"));
    assert!(s.after_sync(2).is_none());
    let mut out = Vec::new();
    s.written(batch.ticket, batch.sync, true, &mut out);
    assert_eq!(out.len(), 1, "only the first batch is durable");
    let batch = s.next_batch().expect("a batch");
    s.written(batch.ticket, batch.sync, false, &mut out);
    assert_eq!(
        out,
        vec![(1, true), (2, false)],
        "a failed write reports its waiter"
    );
}

/// True when the writer was notified since the last call (consumes the wake-up).
fn notified(s: &Store<u64>) -> bool {
    let wake = s.wake.clone();
    let mut fut = std::pin::pin!(wake.notified());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    fut.as_mut().poll(&mut cx).is_ready()
}

#[test]
fn the_writer_wakes_for_the_next_record_after_an_idle_look() {
    // Under `--sync never` a waiter that arrives while a batch is being written is released
    // by that batch; the writer then looks, finds nothing, and must still be woken by the
    // next record.
    let mut s = store(1 << 20);
    s.policy = SyncPolicy::Never;
    s.append_publish(1, 1, false, false, &msg(b"a"));
    let batch = s.next_batch().expect("a record to write");
    assert!(s.after_sync(1).is_none(), "the record is not written yet");
    let mut out = Vec::new();
    s.written(batch.ticket, batch.sync, true, &mut out);
    assert_eq!(out, vec![(1, true)]);
    assert!(notified(&s), "the waiter woke the writer");
    assert!(s.next_batch().is_none(), "nothing left to do");
    s.append_publish(1, 2, false, false, &msg(b"b"));
    assert!(notified(&s), "the next record wakes the writer again");
    assert!(s.next_batch().is_some());
}
