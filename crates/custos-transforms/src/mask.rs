//! Masking: replaces characters with a mask character, keeping a prefix and suffix, the
//! domain of an email, or what a position pattern says.

/// How `mask` rewrites a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskSpec {
    /// Characters kept at the start.
    pub keep_first: usize,
    /// Characters kept at the end.
    pub keep_last: usize,
    /// The mask character.
    pub mask: char,
    /// Keep non-alphanumeric characters and count only letters and digits.
    pub keep_separators: bool,
    /// Keep the first character of the local part and the whole domain of an email.
    pub email: bool,
    /// Position pattern: `#` keeps, `*` masks, anything else is written as is.
    pub pattern: Option<String>,
}

impl Default for MaskSpec {
    fn default() -> Self {
        Self {
            keep_first: 0,
            keep_last: 0,
            mask: '*',
            keep_separators: true,
            email: false,
            pattern: None,
        }
    }
}

impl MaskSpec {
    /// Appends the masked form of `value` to `out`.
    pub fn apply(&self, value: &str, out: &mut String) {
        if let Some(p) = &self.pattern {
            let mut pat = p.chars();
            for c in value.chars() {
                match pat.next() {
                    Some('#') => out.push(c),
                    Some('*') | None => out.push(self.mask),
                    Some(lit) => out.push(lit),
                }
            }
            return;
        }
        if self.email
            && let Some(at) = value.rfind('@')
            && at > 0
        {
            let local = &value[..at];
            let mut chars = local.chars();
            if let Some(first) = chars.next() {
                out.push(first);
            }
            out.extend(chars.map(|_| self.mask));
            out.push_str(&value[at..]);
            return;
        }
        if value.is_ascii() && self.mask.is_ascii() {
            self.apply_ascii(value.as_bytes(), out);
        } else {
            self.apply_chars(value, out);
        }
    }

    /// How many counted characters to keep at each end, of `total`: never the whole value,
    /// so when first + last would cover it, less is kept.
    fn kept(&self, total: usize) -> (usize, usize) {
        if self.keep_first + self.keep_last >= total {
            let keep = total / 2;
            let first = self.keep_first.min(keep);
            (first, self.keep_last.min(keep - first))
        } else {
            (self.keep_first, self.keep_last)
        }
    }

    /// Keep-first/last masking of ASCII text, a byte per character (phone numbers, ids): the
    /// same rule as [`MaskSpec::apply_chars`] without decoding characters.
    fn apply_ascii(&self, b: &[u8], out: &mut String) {
        let counts = |c: u8| !self.keep_separators || c.is_ascii_alphanumeric();
        let total = b.iter().filter(|&&c| counts(c)).count();
        let (first, last) = self.kept(total);
        out.reserve(b.len());
        let mut seen = 0;
        for &c in b {
            let keep = !counts(c) || {
                seen += 1;
                seen <= first || seen > total - last
            };
            out.push(char::from(if keep { c } else { self.mask as u8 }));
        }
    }

    /// Keep-first/last masking of any text, character by character.
    fn apply_chars(&self, value: &str, out: &mut String) {
        let counts = |c: char| !self.keep_separators || c.is_alphanumeric();
        let total = value.chars().filter(|c| counts(*c)).count();
        let (first, last) = self.kept(total);
        let mut seen = 0;
        for c in value.chars() {
            if counts(c) {
                seen += 1;
                if seen <= first || seen > total - last {
                    out.push(c);
                } else {
                    out.push(self.mask);
                }
            } else {
                out.push(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(spec: &MaskSpec, v: &str) -> String {
        let mut s = String::new();
        spec.apply(v, &mut s);
        s
    }

    #[test]
    fn keeps_last_digits_and_separators() {
        let s = MaskSpec {
            keep_last: 4,
            ..Default::default()
        };
        assert_eq!(m(&s, "718-574-5483"), "***-***-5483");
        assert_eq!(m(&s, "+1 (205) 452-1736"), "+* (***) ***-1736");
    }

    #[test]
    fn never_reveals_a_short_value_whole() {
        let s = MaskSpec {
            keep_last: 4,
            ..Default::default()
        };
        assert_eq!(m(&s, "1234"), "**34");
        assert_eq!(m(&s, ""), "");
    }

    #[test]
    fn email_and_pattern() {
        let s = MaskSpec {
            email: true,
            ..Default::default()
        };
        assert_eq!(
            m(&s, "ada.lovelace@example.org"),
            "a***********@example.org"
        );
        let p = MaskSpec {
            pattern: Some("***-**-####".into()),
            ..Default::default()
        };
        assert_eq!(m(&p, "123-45-6789"), "***-**-6789");
        assert_eq!(m(&p, "123-45-678901"), "***-**-6789**");
    }

    #[test]
    fn multibyte_and_custom_char() {
        let s = MaskSpec {
            keep_first: 1,
            mask: '#',
            keep_separators: false,
            ..Default::default()
        };
        assert_eq!(m(&s, "Zoë Ä"), "Z####");
    }

    #[test]
    fn the_ascii_path_masks_like_the_character_path() {
        // A fixed pseudo-random sweep: values of digits, letters and separators, every
        // combination of kept counts, separators counted or not, two mask characters.
        const ALPHABET: &[u8] = b"0123456789abcXYZ -()+./";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..20_000 {
            let len = next(25);
            let value: String = (0..len)
                .map(|_| char::from(ALPHABET[next(ALPHABET.len())]))
                .collect();
            let spec = MaskSpec {
                keep_first: next(6),
                keep_last: next(6),
                mask: if next(2) == 0 { '*' } else { '#' },
                keep_separators: next(2) == 0,
                ..Default::default()
            };
            let (mut a, mut b) = (String::new(), String::new());
            spec.apply_ascii(value.as_bytes(), &mut a);
            spec.apply_chars(&value, &mut b);
            assert_eq!(a, b, "{value:?} {spec:?}");
            assert_eq!(m(&spec, &value), a, "{value:?} {spec:?}");
        }
    }
}
