//! Binding arguments compared the way RabbitMQ compares them.
//!
//! RabbitMQ decodes a field table into Erlang terms (`rabbit_binary_parser`)
//! and then uses two different equalities:
//!
//! - binding identity (is this bind a duplicate, which binding does unbind
//!   remove) is exact term equality on the arguments sorted by key, so
//!   `{I32 1}` and `{I64 1}` are different bindings;
//! - headers matching compares only the *values* of top-level entries with
//!   Erlang's `==`, which ignores the AMQP type: `I32(1)`, `I64(1)`,
//!   `Timestamp(1)` and `F64(1.0)` are all equal, as are a long string and a
//!   byte array with the same bytes. Inside arrays and nested tables the type
//!   tag is part of each element, so there types must match.
//!
//! RabbitMQ decodes both `l` and `L` as a signed 64-bit `long`, so `U64` is
//! read here as the `i64` with the same bits, and `ShortStr` (encoded as `S`)
//! is a `longstr`.

use crate::protocol::table::{FieldTable, FieldValue};

/// The arguments sorted by key, stably, as RabbitMQ stores a binding.
pub(crate) fn sorted(arguments: &FieldTable) -> FieldTable {
    let mut sorted = arguments.clone();
    sorted.0.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
}

/// Exact equality of two tables (Erlang `=:=`); floats compare by bits so a
/// NaN argument still names one binding that can be unbound.
pub(crate) fn identical(a: &FieldTable, b: &FieldTable) -> bool {
    a.0.len() == b.0.len()
        && a.0
            .iter()
            .zip(&b.0)
            .all(|((key_a, value_a), (key_b, value_b))| {
                key_a == key_b && value_identical(value_a, value_b)
            })
}

fn value_identical(a: &FieldValue, b: &FieldValue) -> bool {
    use FieldValue as V;
    match (a, b) {
        (V::F32(x), V::F32(y)) => x.to_bits() == y.to_bits(),
        (V::F64(x), V::F64(y)) => x.to_bits() == y.to_bits(),
        (V::ShortStr(x) | V::LongStr(x), V::ShortStr(y) | V::LongStr(y)) => x == y,
        (V::I64(x), V::U64(y)) | (V::U64(y), V::I64(x)) => *x == *y as i64,
        (V::Array(x), V::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| value_identical(x, y))
        }
        (V::Table(x), V::Table(y)) => identical(x, y),
        _ => a == b,
    }
}

/// The Erlang term a field value decodes to, for `==`.
enum Term<'a> {
    Bool(bool),
    Integer(i128),
    Float(f64),
    Decimal(u8, u32),
    Binary(&'a [u8]),
    Array(&'a [FieldValue]),
    Table(&'a FieldTable),
    Undefined,
}

fn term(value: &FieldValue) -> Term<'_> {
    use FieldValue as V;
    match value {
        V::Bool(b) => Term::Bool(*b),
        V::I8(n) => Term::Integer(i128::from(*n)),
        V::U8(n) => Term::Integer(i128::from(*n)),
        V::I16(n) => Term::Integer(i128::from(*n)),
        V::U16(n) => Term::Integer(i128::from(*n)),
        V::I32(n) => Term::Integer(i128::from(*n)),
        V::U32(n) => Term::Integer(i128::from(*n)),
        V::I64(n) => Term::Integer(i128::from(*n)),
        V::U64(n) => Term::Integer(i128::from(*n as i64)),
        V::Timestamp(n) => Term::Integer(i128::from(*n)),
        V::F32(f) => Term::Float(f64::from(*f)),
        V::F64(f) => Term::Float(*f),
        V::Decimal { scale, value } => Term::Decimal(*scale, *value),
        V::ShortStr(s) | V::LongStr(s) | V::Bytes(s) => Term::Binary(s),
        V::Array(items) => Term::Array(items),
        V::Table(table) => Term::Table(table),
        V::Void => Term::Undefined,
    }
}

/// The type atom RabbitMQ pairs with a value inside arrays and tables.
fn type_tag(value: &FieldValue) -> u8 {
    use FieldValue as V;
    match value {
        V::Bool(_) => b't',
        V::I8(_) => b'b',
        V::U8(_) => b'B',
        V::I16(_) => b's',
        V::U16(_) => b'u',
        V::I32(_) => b'I',
        V::U32(_) => b'i',
        V::I64(_) | V::U64(_) => b'l',
        V::F32(_) => b'f',
        V::F64(_) => b'd',
        V::Decimal { .. } => b'D',
        V::ShortStr(_) | V::LongStr(_) => b'S',
        V::Array(_) => b'A',
        V::Timestamp(_) => b'T',
        V::Table(_) => b'F',
        V::Void => b'V',
        V::Bytes(_) => b'x',
    }
}

fn integer_equals_float(integer: i128, float: f64) -> bool {
    // Erlang compares an integer and a float exactly.
    float.is_finite() && float.trunc() == float && float.abs() < 1.0e38 && float as i128 == integer
}

fn tagged_equal(a: &FieldValue, b: &FieldValue) -> bool {
    type_tag(a) == type_tag(b) && erlang_equal(a, b)
}

/// Erlang's `==` on the decoded values (the AMQP type is ignored).
pub(crate) fn erlang_equal(a: &FieldValue, b: &FieldValue) -> bool {
    // The common header types first, without building terms.
    match (a, b) {
        (FieldValue::LongStr(x), FieldValue::LongStr(y)) => return x == y,
        (FieldValue::I32(x), FieldValue::I32(y)) => return x == y,
        (FieldValue::I64(x), FieldValue::I64(y)) => return x == y,
        (FieldValue::Bool(x), FieldValue::Bool(y)) => return x == y,
        _ => {}
    }
    match (term(a), term(b)) {
        (Term::Bool(x), Term::Bool(y)) => x == y,
        (Term::Integer(x), Term::Integer(y)) => x == y,
        (Term::Float(x), Term::Float(y)) => x == y,
        (Term::Integer(i), Term::Float(f)) | (Term::Float(f), Term::Integer(i)) => {
            integer_equals_float(i, f)
        }
        (Term::Decimal(scale_a, value_a), Term::Decimal(scale_b, value_b)) => {
            scale_a == scale_b && value_a == value_b
        }
        (Term::Binary(x), Term::Binary(y)) => x == y,
        (Term::Array(x), Term::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| tagged_equal(x, y))
        }
        (Term::Table(x), Term::Table(y)) => {
            x.0.len() == y.0.len()
                && x.0
                    .iter()
                    .zip(&y.0)
                    .all(|((key_x, x), (key_y, y))| key_x == key_y && tagged_equal(x, y))
        }
        // Both decode to the empty list.
        (Term::Array(items), Term::Table(table)) | (Term::Table(table), Term::Array(items)) => {
            items.is_empty() && table.0.is_empty()
        }
        (Term::Undefined, Term::Undefined) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use FieldValue as V;

    fn table(entries: &[(&str, FieldValue)]) -> FieldTable {
        FieldTable(
            entries
                .iter()
                .map(|(key, value)| (Bytes::copy_from_slice(key.as_bytes()), value.clone()))
                .collect(),
        )
    }

    #[test]
    fn header_values_compare_like_erlang_double_equals() {
        let equal = [
            (V::I32(1), V::I64(1)),
            (V::U8(7), V::Timestamp(7)),
            (V::I16(2), V::F64(2.0)),
            (V::F32(1.5), V::F64(1.5)),
            (
                V::LongStr(Bytes::from_static(b"x")),
                V::Bytes(Bytes::from_static(b"x")),
            ),
            (V::U64(u64::MAX), V::I64(-1)),
            (V::Void, V::Void),
            (V::Array(vec![]), V::Table(FieldTable::default())),
            (V::Array(vec![V::I32(1)]), V::Array(vec![V::I32(1)])),
        ];
        for (a, b) in &equal {
            assert!(erlang_equal(a, b), "expected {a:?} == {b:?}");
        }
        let different = [
            (V::I32(1), V::Bool(true)),
            (V::I32(1), V::F64(1.5)),
            (V::F32(0.1), V::F64(0.1)),
            (
                V::Decimal {
                    scale: 1,
                    value: 10,
                },
                V::I32(1),
            ),
            (V::LongStr(Bytes::from_static(b"1")), V::I32(1)),
            (V::Void, V::LongStr(Bytes::new())),
            (V::Array(vec![V::I32(1)]), V::Array(vec![V::I64(1)])),
            (
                V::Table(table(&[("a", V::I32(1))])),
                V::Table(table(&[("a", V::U32(1))])),
            ),
        ];
        for (a, b) in &different {
            assert!(!erlang_equal(a, b), "expected {a:?} /= {b:?}");
        }
    }

    #[test]
    fn binding_identity_needs_same_types_and_ignores_key_order() {
        let a = sorted(&table(&[("b", V::I32(1)), ("a", V::F64(f64::NAN))]));
        let b = sorted(&table(&[("a", V::F64(f64::NAN)), ("b", V::I32(1))]));
        assert!(
            identical(&a, &b),
            "sorted tables with the same entries should be one binding"
        );
        let c = sorted(&table(&[("a", V::F64(f64::NAN)), ("b", V::I64(1))]));
        assert!(
            !identical(&a, &c),
            "I32 and I64 arguments should be different bindings"
        );
    }
}
