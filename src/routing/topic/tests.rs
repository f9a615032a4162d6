//! The topic trie against a reference matcher, RabbitMQ's word rules, and churn.

use super::*;
use proptest::prelude::*;

fn route(trie: &TopicTrie<u32>, key: &str) -> Vec<u32> {
    let mut out: SmallVec<[u32; 8]> = SmallVec::new();
    trie.route(key.as_bytes(), &mut out);
    let mut out = out.to_vec();
    out.sort_unstable();
    out
}

fn matches(pattern: &str, key: &str) -> bool {
    let mut trie = TopicTrie::new();
    trie.insert(pattern.as_bytes(), 1u32);
    route(&trie, key) == [1]
}

/// Reference matcher: a direct recursive reading of the topic rules.
fn reference_matches(pattern: &[&[u8]], key: &[&[u8]]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((&b"#", rest)) => {
            reference_matches(rest, key)
                || (!key.is_empty() && reference_matches(pattern, &key[1..]))
        }
        Some((&word, rest)) => match key.split_first() {
            Some((&first, key_rest)) => {
                (word == b"*" || word == first) && reference_matches(rest, key_rest)
            }
            None => false,
        },
    }
}

#[test]
fn words_split_like_rabbitmq() {
    let split = |key: &str| {
        words(key.as_bytes())
            .map(|w| w.to_vec())
            .collect::<Vec<_>>()
    };
    assert_eq!(split(""), Vec::<Vec<u8>>::new());
    assert_eq!(split("."), vec![b"".to_vec(), b"".to_vec()]);
    assert_eq!(
        split("a..b"),
        vec![b"a".to_vec(), b"".to_vec(), b"b".to_vec()]
    );
    assert_eq!(split("a."), vec![b"a".to_vec(), b"".to_vec()]);
}

#[test]
fn hash_matches_zero_or_more_words() {
    let cases = [
        ("#", "", true),
        ("#", "a", true),
        ("#", "a.b.c", true),
        ("#", ".", true),
        ("#.a", "a", true),
        ("#.a", "x.a", true),
        ("#.a", "a.x", false),
        ("a.#", "a", true),
        ("a.#", "a.b.c", true),
        ("a.#", "b", false),
        ("a.#.b", "a.b", true),
        ("a.#.b", "a.x.y.b", true),
        ("a.#.b", "a.b.x", false),
        ("a.#.#.b", "a.b", true),
        ("a.#.#.b", "a.x.b", true),
        ("a.#.#.b", "a.x.y.z.b", true),
        ("#.#", "", true),
        ("#.#", "a.b", true),
        ("a.*.#", "a", false),
        ("a.*.#", "a.b", true),
        ("a.*.#", "a.b.c.d", true),
        ("#.b.#", "b", true),
        ("#.b.#", "a.b.c", true),
        ("#.b.#", "a.c", false),
        ("a#", "a", false),
        ("a#", "a#", true),
    ];
    for (pattern, key, expected) in cases {
        assert_eq!(
            matches(pattern, key),
            expected,
            "pattern {pattern:?} key {key:?}"
        );
    }
}

#[test]
fn star_matches_exactly_one_word_including_empty() {
    let cases = [
        ("*", "a", true),
        ("*", "", false),
        ("*", "a.b", false),
        ("*", ".", false),
        ("*.*", "a", false),
        ("*.*", "a.b", true),
        ("*.*", ".", true),
        ("*.*", "a.", true),
        ("a.*", "a.", true),
        ("a.*", "a", false),
        ("*.b", ".b", true),
        ("a..b", "a..b", true),
        ("a.*.b", "a..b", true),
        ("", "", true),
        ("", "a", false),
        ("a", "", false),
        ("*", "*", true),
    ];
    for (pattern, key, expected) in cases {
        assert_eq!(
            matches(pattern, key),
            expected,
            "pattern {pattern:?} key {key:?}"
        );
    }
}

#[test]
fn destination_matched_by_several_patterns_is_routed_once() {
    let mut trie = TopicTrie::new();
    for pattern in ["a.*", "#", "a.b", "*.b", "a.#", "#.#"] {
        assert!(trie.insert(pattern.as_bytes(), 7u32));
    }
    trie.insert(b"a.b", 9);
    assert_eq!(route(&trie, "a.b"), vec![7, 9]);
    assert_eq!(route(&trie, "zzz"), vec![7]);
}

#[test]
fn duplicate_insert_and_missing_remove_report_false() {
    let mut trie = TopicTrie::new();
    assert!(trie.insert(b"a.b", 1u32));
    assert!(!trie.insert(b"a.b", 1));
    assert!(!trie.remove(b"a.c", 1));
    assert!(!trie.remove(b"a.b", 2));
    assert!(!trie.remove(b"a", 1));
    assert!(trie.remove(b"a.b", 1));
    assert!(!trie.remove(b"a.b", 1));
}

#[test]
fn unbinding_prunes_nodes_and_churn_reuses_them() {
    let mut trie = TopicTrie::new();
    trie.insert(b"keep.#", 1u32);
    let baseline = trie.node_count();
    let mut peak_capacity = 0;
    for round in 0..20u32 {
        for i in 0..200u32 {
            let pattern = format!("r{round}.q{i}.*.#.x{i}");
            assert!(trie.insert(pattern.as_bytes(), i));
        }
        peak_capacity = peak_capacity.max(trie.node_capacity());
        for i in 0..200u32 {
            let pattern = format!("r{round}.q{i}.*.#.x{i}");
            assert!(trie.remove(pattern.as_bytes(), i), "remove {pattern}");
        }
        assert_eq!(
            trie.node_count(),
            baseline,
            "nodes left after round {round}"
        );
    }
    assert!(
        trie.node_capacity() <= peak_capacity,
        "arena grew past its peak: {} > {peak_capacity}",
        trie.node_capacity()
    );
    assert_eq!(route(&trie, "keep.it"), vec![1]);
    assert!(trie.remove(b"keep.#", 1));
    assert_eq!(trie.node_count(), 1, "only the root should remain");
}

#[test]
fn removing_a_prefix_pattern_keeps_longer_patterns() {
    let mut trie = TopicTrie::new();
    trie.insert(b"a", 1u32);
    trie.insert(b"a.b", 2);
    trie.insert(b"a.#", 3);
    assert!(trie.remove(b"a", 1));
    assert_eq!(route(&trie, "a.b"), vec![2, 3]);
    assert!(trie.remove(b"a.#", 3));
    assert_eq!(route(&trie, "a.b"), vec![2]);
    assert_eq!(route(&trie, "a"), Vec::<u32>::new());
    assert!(trie.remove(b"a.b", 2));
    assert_eq!(trie.node_count(), 1);
}

fn word() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b"), Just(""), Just("*"), Just("#")]
}

fn key_word() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b"), Just("c"), Just("")]
}

fn join(words: &[&str], empty: bool) -> String {
    if empty {
        String::new()
    } else {
        words.join(".")
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn trie_agrees_with_reference_matcher(
        patterns in prop::collection::vec((prop::collection::vec(word(), 1..6), any::<bool>()), 1..12),
        keys in prop::collection::vec((prop::collection::vec(key_word(), 1..7), any::<bool>()), 1..12),
        removed in prop::collection::vec(any::<bool>(), 12),
    ) {
        let patterns: Vec<String> = patterns
            .iter()
            .map(|(words, empty)| join(words, *empty && words.len() == 1))
            .collect();
        let mut trie = TopicTrie::new();
        let mut live = Vec::new();
        for (dest, pattern) in patterns.iter().enumerate() {
            trie.insert(pattern.as_bytes(), dest as u32);
        }
        for (dest, pattern) in patterns.iter().enumerate() {
            if removed[dest] {
                prop_assert!(trie.remove(pattern.as_bytes(), dest as u32));
            } else {
                live.push((dest as u32, pattern));
            }
        }
        for (words_of_key, empty) in &keys {
            let key = join(words_of_key, *empty && words_of_key.len() == 1);
            let key_words: Vec<&[u8]> = words(key.as_bytes()).collect();
            let mut expected: Vec<u32> = live
                .iter()
                .filter(|(_, pattern)| {
                    let pattern_words: Vec<&[u8]> = words(pattern.as_bytes()).collect();
                    reference_matches(&pattern_words, &key_words)
                })
                .map(|(dest, _)| *dest)
                .collect();
            expected.sort_unstable();
            prop_assert_eq!(route(&trie, &key), expected, "key {:?} patterns {:?}", key, live);
        }
        for (dest, pattern) in &live {
            prop_assert!(trie.remove(pattern.as_bytes(), *dest));
        }
        prop_assert_eq!(trie.node_count(), 1, "trie not pruned to the root");
    }
}
