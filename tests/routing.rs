//! Exchange routing that clients rely on beyond the tutorials: `#` in topic bindings matching
//! zero words, headers exchanges with x-match all and any, and exchange-to-exchange bindings
//! forming a cycle (each queue still gets a message once). Written on a raw socket
//! (tests/support/raw.rs).

mod support;

use support::raw::*;
use support::Broker;

#[test]
fn topic_hash_matches_zero_words() {
    let (broker, mut client, queue) = broker_with_queue("hash");
    let exchange = broker.queue_name("topics");
    client.exchange_declare(1, &exchange, "topic");
    client.queue_bind(1, &queue, &exchange, "a.#.b");
    client.queue_bind(1, &queue, &exchange, "#.z");
    for key in ["a.b", "a.x.y.b", "a.bb", "z", "y.z", "a", "a.b.c", "zz"] {
        client.publish(1, &exchange, key, key);
    }
    assert_eq!(
        client.get_all(1, &queue),
        vec!["a.b", "a.x.y.b", "z", "y.z"],
        "expected a.#.b and #.z to match with # as zero or more words"
    );
    client.queue_delete(1, &queue);
    client.exchange_delete(1, &exchange);
    client.close();
}

#[test]
fn headers_exchange_x_match_all_and_any() {
    let broker = Broker::start(&[]);
    let mut client = Client::connect_with_channel(broker.port());
    let all = broker.queue_name("headers-all");
    let any = broker.queue_name("headers-any");
    for (queue, x_match) in [(&all, "all"), (&any, "any")] {
        client.queue_declare(1, queue);
        client.queue_bind_with(
            1,
            queue,
            "amq.headers",
            "",
            &[
                ("x-match", s(x_match)),
                ("format", s("pdf")),
                ("type", s("report")),
            ],
        );
        client.expect(1, QUEUE_BIND_OK);
    }

    let both: &[(&str, Value)] = &[
        ("format", s("pdf")),
        ("type", s("report")),
        ("extra", s("x")),
    ];
    let format_only: &[(&str, Value)] = &[("format", s("pdf"))];
    let type_only: &[(&str, Value)] = &[("type", s("report")), ("format", s("zip"))];
    let neither: &[(&str, Value)] = &[("format", s("zip"))];
    for (headers, body) in [
        (both, "both"),
        (format_only, "format"),
        (type_only, "type"),
        (neither, "neither"),
    ] {
        client.publish_with(
            1,
            "amq.headers",
            "ignored",
            PublishFlags::PLAIN,
            Some(headers),
            body,
        );
    }
    client.publish(1, "amq.headers", "ignored", "no headers");
    assert_eq!(
        client.get_all(1, &all),
        vec!["both"],
        "expected x-match=all to need every header"
    );
    assert_eq!(
        client.get_all(1, &any),
        vec!["both", "format", "type"],
        "expected x-match=any to need one matching header"
    );
    client.queue_delete(1, &all);
    client.queue_delete(1, &any);
    client.close();
}

#[test]
fn exchange_to_exchange_cycle_delivers_once_per_queue() {
    let broker = Broker::start(&[]);
    let mut client = Client::connect_with_channel(broker.port());
    let a = broker.queue_name("e2e-a");
    let b = broker.queue_name("e2e-b");
    let qa = broker.queue_name("e2e-qa");
    let qb = broker.queue_name("e2e-qb");
    client.exchange_declare(1, &a, "fanout");
    client.exchange_declare(1, &b, "fanout");
    client.exchange_bind(1, &b, &a, "");
    client.exchange_bind(1, &a, &b, "");
    client.queue_declare(1, &qa);
    client.queue_declare(1, &qb);
    client.queue_bind(1, &qa, &a, "");
    client.queue_bind(1, &qb, &b, "");
    client.queue_bind(1, &qb, &a, "");

    client.publish(1, &a, "", "via a");
    client.publish(1, &b, "", "via b");
    for queue in [&qa, &qb] {
        assert_eq!(
            client.get_all(1, queue),
            vec!["via a", "via b"],
            "expected each message once in {queue}"
        );
    }
    client.queue_delete(1, &qa);
    client.queue_delete(1, &qb);
    client.exchange_delete(1, &a);
    client.exchange_delete(1, &b);
    client.close();
}
