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
        let counts = |c: char| !self.keep_separators || c.is_alphanumeric();
        let total = value.chars().filter(|c| counts(*c)).count();
        // Never reveal the whole value: if first + last cover it, keep less.
        let (first, last) = if self.keep_first + self.keep_last >= total {
            let keep = total / 2;
            (
                self.keep_first.min(keep),
                self.keep_last.min(keep - self.keep_first.min(keep)),
            )
        } else {
            (self.keep_first, self.keep_last)
        };
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
}
