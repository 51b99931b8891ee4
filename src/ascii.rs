//! Whole-text byte checks written so the compiler checks many bytes per instruction: the hot path
//! looks at every byte of a token, a path and an id on each request. And hex digits, written
//! without the formatting machinery (request ids, trace ids, `traceparent`).

/// Writes `bytes` into `out` (twice as long) as lowercase hex digits.
pub(crate) fn write_hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

/// Whether `accept` holds for every byte of `text`. Bytes are looked at in blocks of 16 without
/// stopping inside a block, which the compiler turns into vector instructions.
#[inline]
pub(crate) fn every_byte(text: &[u8], accept: impl Fn(u8) -> bool) -> bool {
    let mut blocks = text.chunks_exact(16);
    for block in &mut blocks {
        let mut all = true;
        for &byte in block {
            all &= accept(byte);
        }
        if !all {
            return false;
        }
    }
    blocks.remainder().iter().all(|&byte| accept(byte))
}

#[cfg(test)]
mod tests {
    use super::every_byte;

    #[test]
    fn every_byte_is_looked_at_wherever_it_sits() {
        let digit = |byte: u8| byte.is_ascii_digit();
        assert!(every_byte(b"", digit));
        for length in 1..70 {
            let text = vec![b'7'; length];
            assert!(every_byte(&text, digit));
            for bad in 0..length {
                let mut text = text.clone();
                text[bad] = b'x';
                assert!(!every_byte(&text, digit), "{length} {bad}");
            }
        }
    }
}
