//! Whole-text byte checks written so the compiler checks many bytes per instruction: the hot path
//! looks at every byte of a token, a path and an id on each request. And hex digits, written
//! without the formatting machinery (request ids, trace ids, `traceparent`).

/// Writes `bytes` into `out` (twice as long) as lowercase hex digits: eight bytes at a time in
/// one 128-bit integer (a few dozen instructions where a table lookup per digit took ~100; every
/// request writes a request id and, traced, a `traceparent` and a trace id).
pub(crate) fn write_hex(bytes: &[u8], out: &mut [u8]) {
    let mut blocks = bytes.chunks_exact(8);
    let mut outs = out.chunks_exact_mut(16);
    for (block, out) in (&mut blocks).zip(&mut outs) {
        let mut eight = [0; 8];
        eight.copy_from_slice(block);
        out.copy_from_slice(&hex_of_eight(eight));
    }
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let rest = outs.into_remainder();
    for (byte, pair) in blocks.remainder().iter().zip(rest.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

/// Eight bytes as sixteen hex digits: each nibble spread into a byte of its own, then turned
/// into its digit with arithmetic that cannot carry from one byte into the next.
fn hex_of_eight(bytes: [u8; 8]) -> [u8; 16] {
    const BYTES: u128 = 0x0101_0101_0101_0101_0101_0101_0101_0101;
    let x = u128::from(u64::from_be_bytes(bytes));
    let x = (x | (x << 32)) & 0x0000_0000_ffff_ffff_0000_0000_ffff_ffff;
    let x = (x | (x << 16)) & 0x0000_ffff_0000_ffff_0000_ffff_0000_ffff;
    let x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff_00ff_00ff_00ff_00ff;
    let nibbles = (x | (x << 4)) & (0x0f * BYTES);
    // 1 in each byte whose nibble is 10 or more: adding 6 carries it into bit 4.
    let letters = ((nibbles + 6 * BYTES) >> 4) & BYTES;
    (nibbles + u128::from(b'0') * BYTES + letters * u128::from(b'a' - b'0' - 10)).to_be_bytes()
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
    use super::{every_byte, write_hex};

    #[test]
    fn hex_digits_are_those_format_writes() {
        let mut state = 0x243f_6a88_85a3_08d3_u64;
        for length in 0..40 {
            let bytes: Vec<u8> = (0..length)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 56) as u8
                })
                .collect();
            let mut out = vec![0; length * 2];
            write_hex(&bytes, &mut out);
            let expected: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
        let every: Vec<u8> = (0..=255).collect();
        let mut out = vec![0; 512];
        write_hex(&every, &mut out);
        let expected: String = every.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

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
