//! Proptest strategies shared by the codec's tests.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use super::properties::BasicProperties;
use super::table::{FieldTable, FieldValue};

pub fn arb_shortstr() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..32),
        1 => vec(any::<u8>(), 0..=255),
    ]
    .prop_map(Bytes::from)
}

pub fn arb_longstr() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

/// Floats without NaN, which would make `==` fail on a faithful round trip.
fn arb_f32() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("NaN never equals itself", |v| !v.is_nan())
}

fn arb_f64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("NaN never equals itself", |v| !v.is_nan())
}

/// Every value decode can produce (so not `ShortStr`, written as `S`).
pub fn arb_value() -> impl Strategy<Value = FieldValue> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(FieldValue::Bool),
        any::<i8>().prop_map(FieldValue::I8),
        any::<u8>().prop_map(FieldValue::U8),
        any::<i16>().prop_map(FieldValue::I16),
        any::<u16>().prop_map(FieldValue::U16),
        any::<i32>().prop_map(FieldValue::I32),
        any::<u32>().prop_map(FieldValue::U32),
        any::<i64>().prop_map(FieldValue::I64),
        any::<u64>().prop_map(FieldValue::U64),
        arb_f32().prop_map(FieldValue::F32),
        arb_f64().prop_map(FieldValue::F64),
        (any::<u8>(), any::<u32>()).prop_map(|(scale, value)| FieldValue::Decimal { scale, value }),
        arb_longstr().prop_map(FieldValue::LongStr),
        any::<u64>().prop_map(FieldValue::Timestamp),
        Just(FieldValue::Void),
        arb_longstr().prop_map(FieldValue::Bytes),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(FieldValue::Array),
            vec((arb_shortstr(), inner), 0..6)
                .prop_map(|entries| FieldValue::Table(FieldTable(entries))),
        ]
    })
}

pub fn arb_table() -> impl Strategy<Value = FieldTable> {
    vec((arb_shortstr(), arb_value()), 0..6).prop_map(FieldTable)
}

pub fn arb_properties() -> impl Strategy<Value = BasicProperties> {
    let s = || proptest::option::of(arb_shortstr());
    (
        (s(), s(), proptest::option::of(arb_table())),
        (
            proptest::option::of(any::<u8>()),
            proptest::option::of(any::<u8>()),
        ),
        (s(), s(), s(), s()),
        proptest::option::of(any::<u64>()),
        (s(), s(), s(), s()),
    )
        .prop_map(
            |(
                (content_type, content_encoding, headers),
                (delivery_mode, priority),
                (correlation_id, reply_to, expiration, message_id),
                timestamp,
                (kind, user_id, app_id, cluster_id),
            )| BasicProperties {
                content_type,
                content_encoding,
                headers,
                delivery_mode,
                priority,
                correlation_id,
                reply_to,
                expiration,
                message_id,
                timestamp,
                kind,
                user_id,
                app_id,
                cluster_id,
            },
        )
}
