//! Bounds-checked primitives shared by methods, tables and properties.
//!
//! Every read first checks `remaining()` and turns a shortfall into
//! `MethodError::Syntax`, so no peer input can panic the decoder. Strings are
//! split off the input `Bytes` (a reference-count bump, no copy), and no
//! length a peer claims is trusted before the bytes are actually present.
//!
//! AMQP packs consecutive `bit` arguments into one octet, least significant
//! bit first; any non-bit argument ends the run. `Reader` and `Writer` keep
//! that state so the method table can list arguments in spec order and stay
//! oblivious to packing.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::MethodError;

/// Longest short string the wire can carry (its length is one octet).
pub const SHORTSTR_MAX: usize = 255;

/// Cursor over a method payload (or a properties list) that owns its `Bytes`.
pub struct Reader {
    pub buf: Bytes,
    bits: u8,
    bits_left: u8,
}

impl Reader {
    pub fn new(buf: Bytes) -> Reader {
        Reader {
            buf,
            bits: 0,
            bits_left: 0,
        }
    }

    /// Fails unless `n` more bytes are present.
    #[inline]
    fn need(&self, n: usize, what: &'static str) -> Result<(), MethodError> {
        if self.buf.remaining() < n {
            return Err(MethodError::Syntax(what));
        }
        Ok(())
    }

    #[inline]
    pub fn octet(&mut self) -> Result<u8, MethodError> {
        self.bits_left = 0;
        self.need(1, "truncated octet")?;
        Ok(self.buf.get_u8())
    }

    #[inline]
    pub fn short(&mut self) -> Result<u16, MethodError> {
        self.bits_left = 0;
        self.need(2, "truncated short")?;
        Ok(self.buf.get_u16())
    }

    #[inline]
    pub fn long(&mut self) -> Result<u32, MethodError> {
        self.bits_left = 0;
        self.need(4, "truncated long")?;
        Ok(self.buf.get_u32())
    }

    #[inline]
    pub fn longlong(&mut self) -> Result<u64, MethodError> {
        self.bits_left = 0;
        self.need(8, "truncated longlong")?;
        Ok(self.buf.get_u64())
    }

    #[inline]
    pub fn timestamp(&mut self) -> Result<u64, MethodError> {
        self.longlong()
    }

    /// Next bit of the current packed octet, reading a new octet when the
    /// previous run ended or all eight bits are used.
    #[inline]
    pub fn bit(&mut self) -> Result<bool, MethodError> {
        if self.bits_left == 0 {
            self.need(1, "truncated bit octet")?;
            self.bits = self.buf.get_u8();
            self.bits_left = 8;
        }
        let value = self.bits & 1 == 1;
        self.bits >>= 1;
        self.bits_left -= 1;
        Ok(value)
    }

    #[inline]
    pub fn shortstr(&mut self) -> Result<Bytes, MethodError> {
        self.bits_left = 0;
        take_shortstr(&mut self.buf)
    }

    #[inline]
    pub fn longstr(&mut self) -> Result<Bytes, MethodError> {
        self.bits_left = 0;
        take_longstr(&mut self.buf)
    }

    /// Ends a run of packed bits: the next argument starts on an octet.
    #[inline]
    pub fn end_bits(&mut self) {
        self.bits_left = 0;
    }

    /// Arguments must account for the whole payload, as in RabbitMQ's
    /// decoder: trailing bytes mean the peer and we disagree on the layout.
    pub fn finish(&self) -> Result<(), MethodError> {
        if self.buf.has_remaining() {
            return Err(MethodError::Syntax("trailing bytes after arguments"));
        }
        Ok(())
    }
}

/// Splits a length-prefixed short string off `buf`.
#[inline]
pub fn take_shortstr(buf: &mut Bytes) -> Result<Bytes, MethodError> {
    if buf.remaining() < 1 {
        return Err(MethodError::Syntax("truncated short string length"));
    }
    let len = usize::from(buf.get_u8());
    if buf.remaining() < len {
        return Err(MethodError::Syntax("truncated short string"));
    }
    Ok(buf.split_to(len))
}

/// Splits a length-prefixed long string off `buf`; the claimed length is
/// checked against what is present before anything else happens.
#[inline]
pub fn take_longstr(buf: &mut Bytes) -> Result<Bytes, MethodError> {
    if buf.remaining() < 4 {
        return Err(MethodError::Syntax("truncated long string length"));
    }
    let len = buf.get_u32() as usize;
    if buf.remaining() < len {
        return Err(MethodError::Syntax("truncated long string"));
    }
    Ok(buf.split_to(len))
}

/// Builds method arguments into an output buffer, packing bits.
pub struct Writer<'a> {
    pub out: &'a mut BytesMut,
    /// Index of the octet holding the current bit run and how many bits of
    /// it are used; `None` when the last argument was not a bit.
    bit_octet: Option<(usize, u8)>,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut BytesMut) -> Writer<'a> {
        Writer {
            out,
            bit_octet: None,
        }
    }

    #[inline]
    pub fn octet(&mut self, v: &u8) {
        self.bit_octet = None;
        self.out.put_u8(*v);
    }

    #[inline]
    pub fn short(&mut self, v: &u16) {
        self.bit_octet = None;
        self.out.put_u16(*v);
    }

    #[inline]
    pub fn long(&mut self, v: &u32) {
        self.bit_octet = None;
        self.out.put_u32(*v);
    }

    #[inline]
    pub fn longlong(&mut self, v: &u64) {
        self.bit_octet = None;
        self.out.put_u64(*v);
    }

    /// No 0-9-1 method has a timestamp argument; kept so the method table
    /// can name every wire type the spec has.
    #[allow(dead_code)]
    #[inline]
    pub fn timestamp(&mut self, v: &u64) {
        self.longlong(v);
    }

    #[inline]
    pub fn bit(&mut self, v: &bool) {
        match self.bit_octet {
            Some((index, used)) if used < 8 => {
                if *v {
                    // `index` was pushed by this writer, so it is in bounds.
                    self.out[index] |= 1 << used;
                }
                self.bit_octet = Some((index, used + 1));
            }
            _ => {
                self.out.put_u8(u8::from(*v));
                self.bit_octet = Some((self.out.len() - 1, 1));
            }
        }
    }

    #[inline]
    pub fn shortstr(&mut self, v: &Bytes) {
        self.bit_octet = None;
        put_shortstr(self.out, v);
    }

    #[inline]
    pub fn longstr(&mut self, v: &Bytes) {
        self.bit_octet = None;
        put_longstr(self.out, v);
    }

    /// Ends a run of packed bits and hands out the buffer for the next argument.
    #[inline]
    pub fn arg_out(&mut self) -> &mut BytesMut {
        self.bit_octet = None;
        self.out
    }
}

/// Writes a short string, truncating to 255 bytes. Peers can never hand us a
/// longer one (the length is an octet), so only broker-made text such as a
/// long reply-text reaches the cut; it backs off to a UTF-8 character
/// boundary so clients that decode strictly still accept it.
#[inline]
pub fn put_shortstr(out: &mut BytesMut, v: &[u8]) {
    let len = shortstr_len(v);
    out.put_u8(len as u8);
    out.put_slice(v.get(..len).unwrap_or_default());
}

/// Length a short string is written with (see `put_shortstr`).
#[inline]
pub fn shortstr_len(v: &[u8]) -> usize {
    if v.len() <= SHORTSTR_MAX {
        return v.len();
    }
    let mut len = SHORTSTR_MAX;
    // Back off over UTF-8 continuation bytes (0b10xx_xxxx), at most 3.
    while len > SHORTSTR_MAX - 3 && v.get(len).is_some_and(|b| b & 0xC0 == 0x80) {
        len -= 1;
    }
    len
}

#[inline]
pub fn put_longstr(out: &mut BytesMut, v: &[u8]) {
    out.put_u32(v.len() as u32);
    out.put_slice(v);
}

/// Overwrites a u32 placeholder written earlier by the same encoder.
#[inline]
pub fn patch_u32(out: &mut BytesMut, at: usize, value: u32) {
    if let Some(slot) = out.get_mut(at..at + 4) {
        slot.copy_from_slice(&value.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_pack_lsb_first_and_runs_end_at_other_args() {
        let mut out = BytesMut::new();
        let mut w = Writer::new(&mut out);
        w.bit(&true);
        w.bit(&false);
        w.bit(&true);
        w.octet(&7);
        w.bit(&true);
        assert_eq!(&out[..], &[0b101, 7, 1], "bits must pack LSB first");

        let mut r = Reader::new(out.freeze());
        assert_eq!((r.bit(), r.bit(), r.bit()), (Ok(true), Ok(false), Ok(true)));
        assert_eq!(r.octet(), Ok(7));
        assert_eq!(r.bit(), Ok(true));
        assert!(r.finish().is_ok());
    }

    #[test]
    fn nine_bits_take_two_octets() {
        let mut out = BytesMut::new();
        let mut w = Writer::new(&mut out);
        for _ in 0..9 {
            w.bit(&true);
        }
        assert_eq!(&out[..], &[0xFF, 0x01]);
    }

    #[test]
    fn longstr_claiming_more_than_present_is_syntax_error() {
        let mut buf = Bytes::from_static(b"\xFF\xFF\xFF\xFFabc");
        assert_eq!(
            take_longstr(&mut buf),
            Err(MethodError::Syntax("truncated long string"))
        );
    }

    #[test]
    fn shortstr_truncates_on_char_boundary() {
        let mut s = vec![b'a'; 254];
        s.extend_from_slice("é".as_bytes()); // bytes 254 and 255
        let mut out = BytesMut::new();
        put_shortstr(&mut out, &s);
        assert_eq!(out[0], 254, "cut must not split the two-byte 'é'");
        assert_eq!(out.len(), 255);
    }
}
