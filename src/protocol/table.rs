//! Field tables: the typed key/value maps in `arguments`, `client-properties`
//! and message `headers`.
//!
//! Type letters follow RabbitMQ (`rabbit_binary_parser`/`_generator`), not the
//! 0-9-1 spec text, because the clients we must serve were written against
//! RabbitMQ: there `s` is a signed 16-bit integer, so a short string has no
//! letter. `FieldValue::ShortStr` exists for callers that hold a short string
//! and is written as a long string (`S`); decode never produces it.
//!
//! Decoding never trusts a length prefix beyond the bytes present and bounds
//! nesting at `MAX_DEPTH`, so a hostile frame can neither allocate more than
//! it carries nor recurse the stack away.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::{MethodError, ShortStr};
use super::wire::{
    patch_u32, put_longstr, put_shortstr, take_longstr, take_shortstr, Reader, Writer,
};

/// Deepest nesting of tables/arrays we accept. Real clients nest two levels
/// (`capabilities` inside `client-properties`); 64 leaves room for any sane
/// headers while keeping recursion far from the stack limit.
pub const MAX_DEPTH: usize = 64;

/// An AMQP field table; insertion order (and duplicate keys) kept as on the wire.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldTable(pub Vec<(ShortStr, FieldValue)>);

/// A typed value; the comment on each variant is its RabbitMQ type letter.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Bool(bool),                        // 't'
    I8(i8),                            // 'b'
    U8(u8),                            // 'B'
    I16(i16),                          // 's'
    U16(u16),                          // 'u'
    I32(i32),                          // 'I'
    U32(u32),                          // 'i'
    I64(i64),                          // 'l'
    U64(u64),                          // 'L'
    F32(f32),                          // 'f'
    F64(f64),                          // 'd'
    Decimal { scale: u8, value: u32 }, // 'D'
    ShortStr(ShortStr),                // written as 'S', never decoded
    LongStr(Bytes),                    // 'S'
    Array(Vec<FieldValue>),            // 'A'
    Timestamp(u64),                    // 'T'
    Table(FieldTable),                 // 'F'
    Void,                              // 'V'
    Bytes(Bytes),                      // 'x'
}

impl FieldTable {
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.0
            .iter()
            .find(|(k, _)| k.as_ref() == key.as_bytes())
            .map(|(_, v)| v)
    }

    /// Replaces the first entry with `key`, or appends.
    pub fn insert(&mut self, key: &str, value: FieldValue) {
        match self
            .0
            .iter_mut()
            .find(|(k, _)| k.as_ref() == key.as_bytes())
        {
            Some((_, slot)) => *slot = value,
            None => self.0.push((Bytes::copy_from_slice(key.as_bytes()), value)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Reads the u32 length prefix and the entries, advancing `buf` past the
    /// table. Keys and string values are slices of `buf`.
    pub fn decode(buf: &mut Bytes) -> Result<FieldTable, MethodError> {
        decode_table(buf, 0)
    }

    /// Writes the table with its u32 length prefix.
    pub fn encode(&self, out: &mut BytesMut) {
        let at = out.len();
        out.put_u32(0);
        for (key, value) in &self.0 {
            put_shortstr(out, key);
            value.encode(out);
        }
        let len = out.len() - at - 4;
        patch_u32(out, at, len as u32);
    }

    /// Validates a table at the front of `buf` and advances past it without
    /// allocating: the cheap check for content headers we forward verbatim.
    pub fn check(buf: &mut &[u8]) -> Result<(), MethodError> {
        let mut body = split_len_prefixed(buf, "truncated table")?;
        check_entries(&mut body, 0)
    }
}

impl FromIterator<(ShortStr, FieldValue)> for FieldTable {
    fn from_iter<I: IntoIterator<Item = (ShortStr, FieldValue)>>(iter: I) -> FieldTable {
        FieldTable(iter.into_iter().collect())
    }
}

impl FieldValue {
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            FieldValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Any integer type widened to i64 (clients disagree on which integer
    /// type to send `x-max-length` and friends as). A `U64` above
    /// `i64::MAX` yields `None`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            FieldValue::I8(v) => Some(v.into()),
            FieldValue::U8(v) => Some(v.into()),
            FieldValue::I16(v) => Some(v.into()),
            FieldValue::U16(v) => Some(v.into()),
            FieldValue::I32(v) => Some(v.into()),
            FieldValue::U32(v) => Some(v.into()),
            FieldValue::I64(v) => Some(v),
            FieldValue::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            FieldValue::LongStr(b) | FieldValue::ShortStr(b) | FieldValue::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_table(&self) -> Option<&FieldTable> {
        match self {
            FieldValue::Table(t) => Some(t),
            _ => None,
        }
    }

    /// Writes the type letter and the value.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            FieldValue::Bool(v) => {
                out.put_u8(b't');
                out.put_u8(u8::from(*v));
            }
            FieldValue::I8(v) => {
                out.put_u8(b'b');
                out.put_i8(*v);
            }
            FieldValue::U8(v) => {
                out.put_u8(b'B');
                out.put_u8(*v);
            }
            FieldValue::I16(v) => {
                out.put_u8(b's');
                out.put_i16(*v);
            }
            FieldValue::U16(v) => {
                out.put_u8(b'u');
                out.put_u16(*v);
            }
            FieldValue::I32(v) => {
                out.put_u8(b'I');
                out.put_i32(*v);
            }
            FieldValue::U32(v) => {
                out.put_u8(b'i');
                out.put_u32(*v);
            }
            FieldValue::I64(v) => {
                out.put_u8(b'l');
                out.put_i64(*v);
            }
            FieldValue::U64(v) => {
                out.put_u8(b'L');
                out.put_u64(*v);
            }
            FieldValue::F32(v) => {
                out.put_u8(b'f');
                out.put_f32(*v);
            }
            FieldValue::F64(v) => {
                out.put_u8(b'd');
                out.put_f64(*v);
            }
            FieldValue::Decimal { scale, value } => {
                out.put_u8(b'D');
                out.put_u8(*scale);
                out.put_u32(*value);
            }
            FieldValue::ShortStr(v) | FieldValue::LongStr(v) => {
                out.put_u8(b'S');
                put_longstr(out, v);
            }
            FieldValue::Array(items) => {
                out.put_u8(b'A');
                let at = out.len();
                out.put_u32(0);
                for item in items {
                    item.encode(out);
                }
                let len = out.len() - at - 4;
                patch_u32(out, at, len as u32);
            }
            FieldValue::Timestamp(v) => {
                out.put_u8(b'T');
                out.put_u64(*v);
            }
            FieldValue::Table(t) => {
                out.put_u8(b'F');
                t.encode(out);
            }
            FieldValue::Void => out.put_u8(b'V'),
            FieldValue::Bytes(v) => {
                out.put_u8(b'x');
                put_longstr(out, v);
            }
        }
    }
}

fn decode_table(buf: &mut Bytes, depth: usize) -> Result<FieldTable, MethodError> {
    if depth >= MAX_DEPTH {
        return Err(MethodError::Syntax("field table nested too deeply"));
    }
    // The body is split off first, so entries cannot read past the table
    // even if their own lengths lie.
    let mut body = take_longstr(buf).map_err(|_| MethodError::Syntax("truncated table"))?;
    let mut entries = Vec::new();
    while body.has_remaining() {
        let key = take_shortstr(&mut body)?;
        let value = decode_value(&mut body, depth)?;
        entries.push((key, value));
    }
    Ok(FieldTable(entries))
}

macro_rules! fixed {
    ($buf:expr, $n:expr, $get:ident) => {{
        if $buf.remaining() < $n {
            return Err(MethodError::Syntax("truncated field value"));
        }
        $buf.$get()
    }};
}

fn decode_value(buf: &mut Bytes, depth: usize) -> Result<FieldValue, MethodError> {
    let kind = fixed!(buf, 1, get_u8);
    Ok(match kind {
        b't' => FieldValue::Bool(fixed!(buf, 1, get_u8) != 0),
        b'b' => FieldValue::I8(fixed!(buf, 1, get_i8)),
        b'B' => FieldValue::U8(fixed!(buf, 1, get_u8)),
        b's' => FieldValue::I16(fixed!(buf, 2, get_i16)),
        b'u' => FieldValue::U16(fixed!(buf, 2, get_u16)),
        b'I' => FieldValue::I32(fixed!(buf, 4, get_i32)),
        b'i' => FieldValue::U32(fixed!(buf, 4, get_u32)),
        b'l' => FieldValue::I64(fixed!(buf, 8, get_i64)),
        b'L' => FieldValue::U64(fixed!(buf, 8, get_u64)),
        b'f' => FieldValue::F32(fixed!(buf, 4, get_f32)),
        b'd' => FieldValue::F64(fixed!(buf, 8, get_f64)),
        b'D' => {
            let scale = fixed!(buf, 1, get_u8);
            FieldValue::Decimal {
                scale,
                value: fixed!(buf, 4, get_u32),
            }
        }
        b'S' => FieldValue::LongStr(take_longstr(buf)?),
        b'x' => FieldValue::Bytes(take_longstr(buf)?),
        b'T' => FieldValue::Timestamp(fixed!(buf, 8, get_u64)),
        b'V' => FieldValue::Void,
        b'F' => FieldValue::Table(decode_table(buf, depth + 1)?),
        b'A' => {
            if depth + 1 >= MAX_DEPTH {
                return Err(MethodError::Syntax("field array nested too deeply"));
            }
            let mut body = take_longstr(buf).map_err(|_| MethodError::Syntax("truncated array"))?;
            let mut items = Vec::new();
            while body.has_remaining() {
                items.push(decode_value(&mut body, depth + 1)?);
            }
            FieldValue::Array(items)
        }
        _ => return Err(MethodError::Syntax("unknown field value type")),
    })
}

/// Splits a u32-length-prefixed block off a slice.
fn split_len_prefixed<'a>(buf: &mut &'a [u8], what: &'static str) -> Result<&'a [u8], MethodError> {
    if buf.len() < 4 {
        return Err(MethodError::Syntax(what));
    }
    let len = buf.get_u32() as usize;
    if buf.len() < len {
        return Err(MethodError::Syntax(what));
    }
    let (body, rest) = buf.split_at(len);
    *buf = rest;
    Ok(body)
}

fn skip(buf: &mut &[u8], n: usize) -> Result<(), MethodError> {
    if buf.len() < n {
        return Err(MethodError::Syntax("truncated field value"));
    }
    buf.advance(n);
    Ok(())
}

fn check_entries(body: &mut &[u8], depth: usize) -> Result<(), MethodError> {
    if depth >= MAX_DEPTH {
        return Err(MethodError::Syntax("field table nested too deeply"));
    }
    while !body.is_empty() {
        let key_len = usize::from(body.get_u8());
        skip(body, key_len)?;
        check_value(body, depth)?;
    }
    Ok(())
}

fn check_value(buf: &mut &[u8], depth: usize) -> Result<(), MethodError> {
    if buf.is_empty() {
        return Err(MethodError::Syntax("truncated field value"));
    }
    match buf.get_u8() {
        b't' | b'b' | b'B' => skip(buf, 1),
        b's' | b'u' => skip(buf, 2),
        b'I' | b'i' | b'f' => skip(buf, 4),
        b'l' | b'L' | b'd' | b'T' => skip(buf, 8),
        b'D' => skip(buf, 5),
        b'V' => Ok(()),
        b'S' | b'x' => split_len_prefixed(buf, "truncated long string").map(|_| ()),
        b'F' => {
            let mut body = split_len_prefixed(buf, "truncated table")?;
            check_entries(&mut body, depth + 1)
        }
        b'A' => {
            if depth + 1 >= MAX_DEPTH {
                return Err(MethodError::Syntax("field array nested too deeply"));
            }
            let mut body = split_len_prefixed(buf, "truncated array")?;
            while !body.is_empty() {
                check_value(&mut body, depth + 1)?;
            }
            Ok(())
        }
        _ => Err(MethodError::Syntax("unknown field value type")),
    }
}

impl Reader {
    /// A field-table argument.
    #[inline]
    pub fn table(&mut self) -> Result<FieldTable, MethodError> {
        self.end_bits();
        FieldTable::decode(&mut self.buf)
    }
}

impl Writer<'_> {
    /// A field-table argument.
    #[inline]
    pub fn table(&mut self, v: &FieldTable) {
        v.encode(self.arg_out());
    }
}

#[cfg(test)]
mod tests;
