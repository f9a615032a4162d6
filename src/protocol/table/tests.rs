use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::protocol::testutil::arb_table;

fn encoded(t: &FieldTable) -> Bytes {
    let mut out = BytesMut::new();
    t.encode(&mut out);
    out.freeze()
}

#[test]
fn type_letters_follow_rabbitmq() {
    let cases: &[(FieldValue, &[u8])] = &[
        (FieldValue::Bool(true), b"t\x01"),
        (FieldValue::I8(-1), b"b\xff"),
        (FieldValue::U8(200), b"B\xc8"),
        (FieldValue::I16(-2), b"s\xff\xfe"),
        (FieldValue::U16(2), b"u\x00\x02"),
        (FieldValue::I32(-3), b"I\xff\xff\xff\xfd"),
        (FieldValue::U32(3), b"i\x00\x00\x00\x03"),
        (FieldValue::I64(-4), b"l\xff\xff\xff\xff\xff\xff\xff\xfc"),
        (FieldValue::U64(4), b"L\x00\x00\x00\x00\x00\x00\x00\x04"),
        (FieldValue::F32(1.0), b"f\x3f\x80\x00\x00"),
        (FieldValue::F64(1.0), b"d\x3f\xf0\x00\x00\x00\x00\x00\x00"),
        (
            FieldValue::Decimal { scale: 2, value: 5 },
            b"D\x02\x00\x00\x00\x05",
        ),
        (
            FieldValue::LongStr(Bytes::from_static(b"hi")),
            b"S\x00\x00\x00\x02hi",
        ),
        (
            FieldValue::Bytes(Bytes::from_static(b"\x00")),
            b"x\x00\x00\x00\x01\x00",
        ),
        (
            FieldValue::Timestamp(9),
            b"T\x00\x00\x00\x00\x00\x00\x00\x09",
        ),
        (FieldValue::Void, b"V"),
        (
            FieldValue::Array(vec![FieldValue::Void, FieldValue::U8(1)]),
            b"A\x00\x00\x00\x03VB\x01",
        ),
        (
            FieldValue::Table(FieldTable::default()),
            b"F\x00\x00\x00\x00",
        ),
    ];
    for (value, wire) in cases {
        let mut out = BytesMut::new();
        value.encode(&mut out);
        assert_eq!(&out[..], *wire, "encoding of {value:?}");
        let mut table_bytes = BytesMut::new();
        FieldTable(vec![(Bytes::from_static(b"k"), value.clone())]).encode(&mut table_bytes);
        let mut buf = table_bytes.freeze();
        let back = FieldTable::decode(&mut buf).expect("decodes");
        assert_eq!(back.get("k"), Some(value), "decoding of {wire:?}");
    }
}

#[test]
fn short_str_value_is_written_as_long_string() {
    let t = FieldTable(vec![(
        Bytes::from_static(b"k"),
        FieldValue::ShortStr(Bytes::from_static(b"v")),
    )]);
    let mut buf = encoded(&t);
    let back = FieldTable::decode(&mut buf).unwrap();
    assert_eq!(
        back.get("k"),
        Some(&FieldValue::LongStr(Bytes::from_static(b"v")))
    );
}

#[test]
fn insert_replaces_and_keeps_order() {
    let mut t = FieldTable::default();
    t.insert("a", FieldValue::I32(1));
    t.insert("b", FieldValue::I32(2));
    t.insert("a", FieldValue::I32(3));
    assert_eq!(t.len(), 2);
    assert_eq!(t.get("a").and_then(FieldValue::as_i64), Some(3));
    assert_eq!(
        &t.0[0].0[..],
        b"a",
        "replacing must keep the first position"
    );
}

#[test]
fn as_i64_widens_every_integer() {
    assert_eq!(FieldValue::U8(7).as_i64(), Some(7));
    assert_eq!(FieldValue::I16(-7).as_i64(), Some(-7));
    assert_eq!(
        FieldValue::U32(u32::MAX).as_i64(),
        Some(i64::from(u32::MAX))
    );
    assert_eq!(FieldValue::U64(u64::MAX).as_i64(), None);
    assert_eq!(FieldValue::LongStr(Bytes::new()).as_i64(), None);
}

#[test]
fn length_beyond_input_is_refused_without_allocating() {
    let mut buf = Bytes::from_static(b"\xff\xff\xff\xf0\x01k");
    assert_eq!(
        FieldTable::decode(&mut buf),
        Err(MethodError::Syntax("truncated table"))
    );
    let mut slice: &[u8] = b"\xff\xff\xff\xf0\x01k";
    assert!(FieldTable::check(&mut slice).is_err());
}

#[test]
fn unknown_type_letter_is_a_syntax_error() {
    let mut buf = Bytes::from_static(b"\x00\x00\x00\x03\x01kZ");
    assert_eq!(
        FieldTable::decode(&mut buf),
        Err(MethodError::Syntax("unknown field value type"))
    );
}

/// A table nested `levels` deep: F(F(F(...))), built outside-in in linear
/// time. A table of n levels is 6n - 2 bytes.
fn nested(levels: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(6 * levels);
    for level in (1..=levels).rev() {
        out.extend_from_slice(&((6 * level - 6) as u32).to_be_bytes());
        if level > 1 {
            out.extend_from_slice(b"\x00F");
        }
    }
    out.freeze()
}

#[test]
fn nesting_is_bounded() {
    let mut ok = nested(MAX_DEPTH);
    assert!(
        FieldTable::decode(&mut ok).is_ok(),
        "{MAX_DEPTH} levels must decode"
    );
    assert!(FieldTable::check(&mut &nested(MAX_DEPTH)[..]).is_ok());
    let mut deep = nested(MAX_DEPTH + 1);
    assert_eq!(
        FieldTable::decode(&mut deep),
        Err(MethodError::Syntax("field table nested too deeply"))
    );
    assert!(FieldTable::check(&mut &nested(MAX_DEPTH + 1)[..]).is_err());
    // Far deeper than the stack could recurse: refused, not a crash.
    let mut hostile = nested(100_000);
    assert!(FieldTable::decode(&mut hostile).is_err());
}

proptest! {
    #[test]
    fn any_table_round_trips(t in arb_table()) {
        let mut buf = encoded(&t);
        let mut slice = &buf.clone()[..];
        prop_assert!(FieldTable::check(&mut slice).is_ok());
        prop_assert!(slice.is_empty());
        prop_assert_eq!(FieldTable::decode(&mut buf), Ok(t));
        prop_assert!(buf.is_empty(), "decode must consume exactly the table");
    }

    #[test]
    fn check_agrees_with_decode(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut buf = Bytes::from(bytes.clone());
        let mut slice = &bytes[..];
        let decoded = FieldTable::decode(&mut buf);
        let checked = FieldTable::check(&mut slice);
        prop_assert_eq!(decoded.is_ok(), checked.is_ok());
        if decoded.is_ok() {
            prop_assert_eq!(buf.len(), slice.len());
        }
    }

    #[test]
    fn corrupted_tables_never_panic(t in arb_table(), at in any::<usize>(), byte in any::<u8>()) {
        let mut raw = BytesMut::new();
        t.encode(&mut raw);
        if !raw.is_empty() {
            let i = at % raw.len();
            raw[i] = byte;
        }
        let frozen = raw.freeze();
        let _ = FieldTable::decode(&mut frozen.clone());
        let _ = FieldTable::check(&mut &frozen[..]);
    }
}
