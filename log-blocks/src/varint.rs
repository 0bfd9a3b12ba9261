//! LEB128 varints, zigzag for signed deltas, and a reader that checks every read, so a
//! decoder fed bad bytes returns an error instead of panicking or allocating without
//! bound.

use crate::FormatError;

pub fn put_u64(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub fn put_i64(out: &mut Vec<u8>, value: i64) {
    put_u64(out, zigzag(value));
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// A cursor over bytes whose every read is bounds-checked.
pub struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// `what` names the part being read, for the error.
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Reader { bytes, what }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// How many bytes are left to read.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    fn truncated(&self) -> FormatError {
        FormatError::Truncated(self.what)
    }

    pub fn u8(&mut self) -> Result<u8, FormatError> {
        let (&first, rest) = self.bytes.split_first().ok_or_else(|| self.truncated())?;
        self.bytes = rest;
        Ok(first)
    }

    pub fn u64(&mut self) -> Result<u64, FormatError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte may carry only the top bit.
            if shift == 63 && bits > 1 {
                return Err(FormatError::Corrupt(self.what, "varint overflows 64 bits"));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(FormatError::Corrupt(
            self.what,
            "varint longer than 10 bytes",
        ))
    }

    pub fn i64(&mut self) -> Result<i64, FormatError> {
        self.u64().map(unzigzag)
    }

    /// A length that must fit in `limit` (and so in memory).
    pub fn len(&mut self, limit: usize) -> Result<usize, FormatError> {
        let value = self.u64()?;
        usize::try_from(value)
            .ok()
            .filter(|&n| n <= limit)
            .ok_or(FormatError::Corrupt(self.what, "length past its limit"))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if n > self.bytes.len() {
            return Err(self.truncated());
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn unsigned_round_trip(value: u64) {
            let mut out = Vec::new();
            put_u64(&mut out, value);
            let mut reader = Reader::new(&out, "test");
            prop_assert_eq!(reader.u64().expect("test value"), value);
            prop_assert!(reader.is_empty());
        }

        #[test]
        fn signed_round_trip(value: i64) {
            let mut out = Vec::new();
            put_i64(&mut out, value);
            prop_assert_eq!(Reader::new(&out, "test").i64().expect("test value"), value);
        }

        #[test]
        fn any_bytes_never_panic(bytes: Vec<u8>) {
            let mut reader = Reader::new(&bytes, "test");
            while reader.u64().is_ok() {}
        }
    }

    #[test]
    fn small_values_take_one_byte() {
        let mut out = Vec::new();
        put_i64(&mut out, -3);
        put_u64(&mut out, 127);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn overlong_and_truncated_varints_are_errors() {
        let overlong = [0xffu8; 11];
        assert!(matches!(
            Reader::new(&overlong, "t").u64(),
            Err(FormatError::Corrupt(..))
        ));
        let truncated = [0x80u8];
        assert!(matches!(
            Reader::new(&truncated, "t").u64(),
            Err(FormatError::Truncated(_))
        ));
        let mut out = Vec::new();
        put_u64(&mut out, 10);
        assert!(Reader::new(&out, "t").len(9).is_err());
    }
}
