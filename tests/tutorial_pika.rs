//! RabbitMQ's Python tutorials 1 and 2, run unmodified in spirit with pika
//! 1.3.2 (scripts in tests/py/, adjusted only to take the port and queue
//! name and to exit after N messages).

mod common;

use common::{run_python, spawn_python, Broker};
use std::time::Duration;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
const READY: &str = "[*] Waiting for messages";

#[test]
fn hello_world_receiver_prints_the_message_send_py_published() {
    let broker = Broker::start(&[]);
    let port = broker.port().to_string();
    let queue = broker.queue_name("hello");

    let mut receiver = spawn_python("receive.py", &[&port, &queue, "1"]);
    receiver.wait_for_line(READY, SCRIPT_TIMEOUT);

    let sent = run_python("send.py", &[&port, &queue], SCRIPT_TIMEOUT);
    sent.assert_success("send.py");
    assert_eq!(
        sent.lines_with("[x] Sent"),
        vec![" [x] Sent 'Hello World!'".to_string()],
        "expected send.py to report one sent message"
    );

    let received = receiver.finish(SCRIPT_TIMEOUT);
    received.assert_success("receive.py");
    assert_eq!(
        received.lines_with("[x] Received"),
        vec![" [x] Received Hello World!".to_string()],
        "expected receive.py to print exactly the message sent"
    );
}

#[test]
fn hello_world_message_published_before_the_receiver_starts_waits_in_the_queue() {
    let broker = Broker::start(&[]);
    let port = broker.port().to_string();
    let queue = broker.queue_name("hello");

    for body in ["first", "second"] {
        run_python("send.py", &[&port, &queue, body], SCRIPT_TIMEOUT).assert_success("send.py");
    }

    let received = run_python("receive.py", &[&port, &queue, "2"], SCRIPT_TIMEOUT);
    received.assert_success("receive.py");
    assert_eq!(
        received.lines_with("[x] Received"),
        vec![
            " [x] Received first".to_string(),
            " [x] Received second".to_string()
        ],
        "expected the queued messages in publish order"
    );
}

#[test]
fn work_queue_worker_does_every_persistent_task_once_in_order() {
    let broker = Broker::start(&[]);
    let port = broker.port().to_string();
    let queue = broker.queue_name("task_queue");
    let tasks: Vec<String> = (1..=5).map(|i| format!("Task {i}.")).collect();

    let mut args: Vec<&str> = vec![&port, &queue];
    args.extend(tasks.iter().map(String::as_str));
    run_python("new_task.py", &args, SCRIPT_TIMEOUT).assert_success("new_task.py");

    let worker = run_python("worker.py", &[&port, &queue, "5"], SCRIPT_TIMEOUT);
    worker.assert_success("worker.py");
    let expected: Vec<String> = tasks
        .iter()
        .map(|t| format!(" [x] Received {t} delivery_mode=2 redelivered=False"))
        .collect();
    assert_eq!(
        worker.lines_with("[x] Received"),
        expected,
        "expected each task once, in order, persistent (delivery_mode=2), not redelivered"
    );
    assert_eq!(
        worker.lines_with("[x] Done").len(),
        5,
        "expected 5 tasks done"
    );

    let info = run_python("queue_info.py", &[&port, &queue], SCRIPT_TIMEOUT);
    info.assert_success("queue_info.py");
    assert_eq!(
        info.stdout.trim(),
        "messages=0 consumers=0",
        "expected the acked tasks gone from the durable queue"
    );
}

/// prefetch_count=1: a worker holding one unacked task gets no other task
/// until it acks; every other task goes to the free worker.
#[test]
fn work_queue_prefetch_one_sends_no_task_to_a_busy_worker() {
    let broker = Broker::start(&[]);
    let port = broker.port().to_string();
    let queue = broker.queue_name("task_queue");
    let hold_dir = common::fresh_dir("hold");
    let hold_file = hold_dir.join("release");
    let hold_path = hold_file.to_str().expect("utf-8 path").to_string();

    // The slow worker takes the first task and holds it, unacked.
    let mut slow = spawn_python("worker.py", &[&port, &queue, "1", &hold_path]);
    slow.wait_for_line(READY, SCRIPT_TIMEOUT);
    run_python("new_task.py", &[&port, &queue, "slow task"], SCRIPT_TIMEOUT)
        .assert_success("new_task.py");
    slow.wait_for_line("[x] Received slow task", SCRIPT_TIMEOUT);

    // The fast worker joins; ten more tasks arrive while the slow one is busy.
    let mut fast = spawn_python("worker.py", &[&port, &queue, "10"]);
    fast.wait_for_line(READY, SCRIPT_TIMEOUT);
    let tasks: Vec<String> = (1..=10).map(|i| format!("fast task {i}")).collect();
    let mut args: Vec<&str> = vec![&port, &queue];
    args.extend(tasks.iter().map(String::as_str));
    run_python("new_task.py", &args, SCRIPT_TIMEOUT).assert_success("new_task.py");

    // All ten must reach the fast worker while the slow one still holds its
    // task: had the broker pushed one to the slow worker, the fast worker
    // would never see ten and would time out.
    let fast = fast.finish(SCRIPT_TIMEOUT);
    fast.assert_success("fast worker.py");
    let expected: Vec<String> = tasks
        .iter()
        .map(|t| format!(" [x] Received {t} delivery_mode=2 redelivered=False"))
        .collect();
    assert_eq!(
        fast.lines_with("[x] Received"),
        expected,
        "expected the fast worker to get all 10 tasks in order while the slow one was busy"
    );

    std::fs::write(&hold_file, b"go").expect("write hold file");
    let slow = slow.finish(SCRIPT_TIMEOUT);
    slow.assert_success("slow worker.py");
    assert_eq!(
        slow.lines_with("[x] Received"),
        vec![" [x] Received slow task delivery_mode=2 redelivered=False".to_string()],
        "expected the slow worker to get only its one task"
    );
    assert_eq!(
        slow.lines_with("[x] Done").len(),
        1,
        "expected the slow task done once"
    );

    let info = run_python("queue_info.py", &[&port, &queue], SCRIPT_TIMEOUT);
    info.assert_success("queue_info.py");
    assert_eq!(
        info.stdout.trim(),
        "messages=0 consumers=0",
        "expected all 11 tasks acked and gone"
    );
    let _ = std::fs::remove_dir_all(hold_dir);
}
