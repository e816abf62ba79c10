//! Check digits and structural rules shared by the detectors.

/// Luhn (mod 10) over the ASCII digits of `s`; other bytes are skipped. Needs two digits.
pub(crate) fn luhn(s: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut n = 0usize;
    for &b in s.iter().rev() {
        if !b.is_ascii_digit() {
            continue;
        }
        let mut d = u32::from(b - b'0');
        if n % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        n += 1;
    }
    n >= 2 && sum.is_multiple_of(10)
}

/// ISO 7064 mod 97-10 as IBANs use it, over the ASCII alphanumerics of `s` (spaces and other
/// separators skipped): the first four move to the end, letters count 10..35, result must be 1.
pub(crate) fn mod97(s: &[u8]) -> bool {
    // Fold digit by digit so arbitrarily long inputs never overflow.
    fn feed(rem: u32, b: u8) -> Option<u32> {
        match b {
            b'0'..=b'9' => Some((rem * 10 + u32::from(b - b'0')) % 97),
            b'A'..=b'Z' => Some((rem * 100 + u32::from(b - b'A') + 10) % 97),
            b'a'..=b'z' => Some((rem * 100 + u32::from(b - b'a') + 10) % 97),
            _ => None,
        }
    }
    let mut head = [0u8; 4];
    let mut n_head = 0;
    let mut rem = 0u32;
    let mut total = 0usize;
    for &b in s {
        if !b.is_ascii_alphanumeric() {
            continue;
        }
        total += 1;
        if n_head < 4 {
            head[n_head] = b;
            n_head += 1;
            continue;
        }
        match feed(rem, b) {
            Some(r) => rem = r,
            None => return false,
        }
    }
    if total < 5 {
        return false;
    }
    for &b in &head {
        match feed(rem, b) {
            Some(r) => rem = r,
            None => return false,
        }
    }
    rem == 1
}

/// US SSN structure: area not 000, 666 or 900-999; group not 00; serial not 0000.
/// The arguments are the numeric values of the three parts.
pub(crate) fn ssn_parts_valid(area: u32, group: u32, serial: u32) -> bool {
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Parses a run of ASCII digits into a number (callers bound the length).
#[inline]
pub(crate) fn digits_value(s: &[u8]) -> u64 {
    s.iter().fold(0u64, |acc, &b| {
        acc.wrapping_mul(10)
            .wrapping_add(u64::from(b.wrapping_sub(b'0')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"4111 1111 1111 1111"));
        assert!(!luhn(b"4111111111111112"));
        assert!(luhn(b"378282246310005"));
        assert!(!luhn(b"0"));
    }

    #[test]
    fn mod97_known() {
        assert!(mod97(b"GB82WEST12345698765432"));
        assert!(mod97(b"GB82 WEST 1234 5698 7654 32"));
        assert!(mod97(b"DE89370400440532013000"));
        assert!(!mod97(b"DE88370400440532013000"));
        assert!(!mod97(b"DE89"));
    }

    #[test]
    fn ssn_rules() {
        assert!(ssn_parts_valid(123, 45, 6789));
        assert!(!ssn_parts_valid(0, 45, 6789));
        assert!(!ssn_parts_valid(666, 45, 6789));
        assert!(!ssn_parts_valid(900, 45, 6789));
        assert!(!ssn_parts_valid(123, 0, 6789));
        assert!(!ssn_parts_valid(123, 45, 0));
    }
}
