//! PKCS#7 padding, checked strictly: WeChat pads user data to AES's 16-byte blocks and pushed
//! messages to 32-byte blocks. Several SDKs accepted any padding and so "decrypted" garbage made
//! with a stale or wrong key; here 1 to `block` bytes, all equal to their count, or nothing.

/// `data` without its padding to `block`-byte blocks; `None` when the padding is not exact.
pub(crate) fn strip(data: &[u8], block: usize) -> Option<&[u8]> {
    let count = usize::from(*data.last()?);
    if !(1..=block).contains(&count) || count > data.len() {
        return None;
    }
    let (plaintext, padding) = data.split_at(data.len() - count);
    padding
        .iter()
        .all(|&byte| usize::from(byte) == count)
        .then_some(plaintext)
}

#[cfg(test)]
mod tests {
    use super::strip;

    #[test]
    fn padding_to_32_byte_blocks_is_checked_whole() {
        let mut data = vec![7u8; 32];
        data[31] = 32;
        assert_eq!(strip(&data, 32), None, "not all pad bytes equal");
        assert_eq!(strip(&[32u8; 32], 32), Some(&[][..]));
        assert_eq!(strip(&[32u8; 32], 16), None, "beyond a 16-byte block");
        assert_eq!(strip(&[33u8; 64], 32), None, "beyond the block");
        assert_eq!(strip(&[0u8; 32], 32), None);
    }
}
