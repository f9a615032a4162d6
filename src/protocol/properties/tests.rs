use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::protocol::table::FieldValue;
use crate::protocol::testutil::arb_properties;

/// content-type "text/plain", delivery-mode 2: flags 0x9000.
const TEXT_PERSISTENT: &[u8] = b"\x90\x00\x0atext/plain\x02";

#[test]
fn decodes_known_property_list() {
    let p = BasicProperties::decode(TEXT_PERSISTENT).unwrap();
    assert_eq!(p.content_type.as_deref(), Some(&b"text/plain"[..]));
    assert_eq!(p.delivery_mode, Some(2));
    assert_eq!(p.headers, None);
    let mut out = BytesMut::new();
    p.encode(&mut out);
    assert_eq!(&out[..], TEXT_PERSISTENT);
}

#[test]
fn flags_follow_spec_order() {
    let p = BasicProperties {
        cluster_id: Some(Bytes::from_static(b"c")),
        ..Default::default()
    };
    let mut out = BytesMut::new();
    p.encode(&mut out);
    assert_eq!(&out[..], b"\x00\x04\x01c", "cluster-id is bit 2");
    let p = BasicProperties {
        timestamp: Some(1),
        kind: Some(Bytes::from_static(b"t")),
        ..Default::default()
    };
    let mut out = BytesMut::new();
    p.encode(&mut out);
    assert_eq!(&out[..], b"\x00\x60\x00\x00\x00\x00\x00\x00\x00\x01\x01t");
}

#[test]
fn peek_delivery_mode_skips_earlier_properties() {
    let mut headers = FieldTable::default();
    headers.insert("x-retry", FieldValue::I32(3));
    let p = BasicProperties {
        content_type: Some(Bytes::from_static(b"application/json")),
        content_encoding: Some(Bytes::from_static(b"gzip")),
        headers: Some(headers),
        delivery_mode: Some(2),
        priority: Some(5),
        ..Default::default()
    };
    let mut out = BytesMut::new();
    p.encode(&mut out);
    assert_eq!(BasicProperties::peek_delivery_mode(&out), Some(2));
    assert_eq!(BasicProperties::peek_delivery_mode(b"\x80\x00\x01a"), None);
    assert_eq!(
        BasicProperties::peek_delivery_mode(b"\x10\x00"),
        None,
        "truncated"
    );
    assert_eq!(
        BasicProperties::peek_delivery_mode(TEXT_PERSISTENT),
        Some(2)
    );
}

#[test]
fn reserved_and_unknown_flags_are_refused() {
    assert!(
        BasicProperties::decode(b"\x00\x02").is_err(),
        "bit 1 is reserved"
    );
    assert!(
        BasicProperties::decode(b"\x00\x01\x80\x00").is_err(),
        "no 15th property"
    );
    assert_eq!(
        BasicProperties::decode(b"\x00\x01\x00\x00"),
        Ok(BasicProperties::default()),
        "an empty continuation word is legal"
    );
    assert!(
        BasicProperties::decode(b"\x00\x01").is_err(),
        "missing continuation word"
    );
}

#[test]
fn content_header_keeps_raw_properties() {
    let mut payload = BytesMut::new();
    payload.extend_from_slice(b"\x00\x3c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10");
    payload.extend_from_slice(TEXT_PERSISTENT);
    let payload = payload.freeze();
    let h = ContentHeader::decode(payload.clone()).unwrap();
    assert_eq!((h.class_id, h.body_size), (60, 16));
    assert_eq!(&h.properties_raw[..], TEXT_PERSISTENT);
    assert!(
        payload.as_ptr_range().contains(&h.properties_raw.as_ptr()),
        "properties must not be copied"
    );
    assert_eq!(h.delivery_mode(), Some(2));
    assert_eq!(h.properties().unwrap().delivery_mode, Some(2));
}

#[test]
fn content_header_errors() {
    let short = Bytes::from_static(b"\x00\x3c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10\x00");
    assert_eq!(
        ContentHeader::decode(short).unwrap_err(),
        MethodError::Syntax("truncated content header")
    );
    let wrong_class =
        Bytes::from_static(b"\x00\x32\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00");
    assert!(ContentHeader::decode(wrong_class).is_err());
    let truncated_list =
        Bytes::from_static(b"\x00\x3c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10\x80\x00\x05ab");
    assert!(ContentHeader::decode(truncated_list).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_properties_round_trip(p in arb_properties()) {
        let mut out = BytesMut::new();
        p.encode(&mut out);
        prop_assert!(BasicProperties::check(&out).is_ok());
        prop_assert_eq!(BasicProperties::peek_delivery_mode(&out), p.delivery_mode);
        prop_assert_eq!(BasicProperties::decode_bytes(out.freeze()), Ok(p));
    }

    #[test]
    fn check_agrees_with_decode(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        prop_assert_eq!(
            BasicProperties::check(&bytes).is_ok(),
            BasicProperties::decode(&bytes).is_ok()
        );
        let _ = BasicProperties::peek_delivery_mode(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic_content_header(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = ContentHeader::decode(Bytes::from(bytes));
    }

    #[test]
    fn arbitrary_list_after_valid_prefix_never_panics(
        flags in any::<u16>(),
        rest in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut payload = BytesMut::new();
        payload.extend_from_slice(b"\x00\x3c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10");
        payload.extend_from_slice(&flags.to_be_bytes());
        payload.extend_from_slice(&rest);
        let raw = payload.freeze();
        if let Ok(h) = ContentHeader::decode(raw) {
            prop_assert!(h.properties().is_ok(), "check accepted what decode refuses");
        }
    }
}
