//! Country rule tables for phone numbers and IBANs.

/// Phone rules of one country: national significant number length range and the digits it
/// may start with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PhoneRule {
    /// Country calling code, as digits.
    pub(crate) cc: &'static str,
    /// Shortest national significant number.
    pub(crate) min: u8,
    /// Longest national significant number.
    pub(crate) max: u8,
    /// Digits the national number may start with.
    pub(crate) first: &'static [u8],
}

const ANY: &[u8] = b"123456789";

/// Common countries (NANP, +1, is handled by its own stricter rules).
pub(crate) const PHONE_RULES: &[PhoneRule] = &[
    PhoneRule {
        cc: "44",
        min: 9,
        max: 10,
        first: b"123578",
    }, // GB
    PhoneRule {
        cc: "49",
        min: 6,
        max: 13,
        first: ANY,
    }, // DE
    PhoneRule {
        cc: "33",
        min: 9,
        max: 9,
        first: ANY,
    }, // FR
    PhoneRule {
        cc: "34",
        min: 9,
        max: 9,
        first: b"6789",
    }, // ES
    PhoneRule {
        cc: "31",
        min: 9,
        max: 9,
        first: ANY,
    }, // NL
    PhoneRule {
        cc: "39",
        min: 6,
        max: 11,
        first: b"0123456789",
    }, // IT keeps the trunk 0
    PhoneRule {
        cc: "91",
        min: 10,
        max: 10,
        first: b"6789",
    }, // IN (mobile)
    PhoneRule {
        cc: "55",
        min: 10,
        max: 11,
        first: ANY,
    }, // BR
    PhoneRule {
        cc: "61",
        min: 9,
        max: 9,
        first: b"23478",
    }, // AU
    PhoneRule {
        cc: "32",
        min: 8,
        max: 9,
        first: ANY,
    }, // BE
    PhoneRule {
        cc: "41",
        min: 9,
        max: 9,
        first: ANY,
    }, // CH
    PhoneRule {
        cc: "43",
        min: 4,
        max: 13,
        first: ANY,
    }, // AT
    PhoneRule {
        cc: "45",
        min: 8,
        max: 8,
        first: ANY,
    }, // DK
    PhoneRule {
        cc: "46",
        min: 7,
        max: 13,
        first: ANY,
    }, // SE
    PhoneRule {
        cc: "47",
        min: 8,
        max: 8,
        first: ANY,
    }, // NO
    PhoneRule {
        cc: "48",
        min: 9,
        max: 9,
        first: ANY,
    }, // PL
    PhoneRule {
        cc: "351",
        min: 9,
        max: 9,
        first: b"29",
    }, // PT
    PhoneRule {
        cc: "353",
        min: 7,
        max: 9,
        first: ANY,
    }, // IE
    PhoneRule {
        cc: "52",
        min: 10,
        max: 10,
        first: ANY,
    }, // MX
    PhoneRule {
        cc: "81",
        min: 9,
        max: 10,
        first: ANY,
    }, // JP
    PhoneRule {
        cc: "82",
        min: 8,
        max: 10,
        first: ANY,
    }, // KR
    PhoneRule {
        cc: "86",
        min: 10,
        max: 11,
        first: ANY,
    }, // CN
    PhoneRule {
        cc: "7",
        min: 10,
        max: 10,
        first: b"3489",
    }, // RU/KZ
    PhoneRule {
        cc: "27",
        min: 9,
        max: 9,
        first: ANY,
    }, // ZA
    PhoneRule {
        cc: "64",
        min: 8,
        max: 10,
        first: ANY,
    }, // NZ
    PhoneRule {
        cc: "65",
        min: 8,
        max: 8,
        first: b"3689",
    }, // SG
    PhoneRule {
        cc: "971",
        min: 8,
        max: 9,
        first: ANY,
    }, // AE
    PhoneRule {
        cc: "358",
        min: 5,
        max: 12,
        first: ANY,
    }, // FI
    PhoneRule {
        cc: "420",
        min: 9,
        max: 9,
        first: ANY,
    }, // CZ
    PhoneRule {
        cc: "421",
        min: 9,
        max: 9,
        first: ANY,
    }, // SK
    PhoneRule {
        cc: "36",
        min: 8,
        max: 9,
        first: ANY,
    }, // HU
    PhoneRule {
        cc: "40",
        min: 9,
        max: 9,
        first: ANY,
    }, // RO
    PhoneRule {
        cc: "30",
        min: 10,
        max: 10,
        first: ANY,
    }, // GR
    PhoneRule {
        cc: "90",
        min: 10,
        max: 10,
        first: ANY,
    }, // TR
    PhoneRule {
        cc: "54",
        min: 10,
        max: 11,
        first: ANY,
    }, // AR
    PhoneRule {
        cc: "56",
        min: 9,
        max: 9,
        first: ANY,
    }, // CL
    PhoneRule {
        cc: "57",
        min: 10,
        max: 10,
        first: ANY,
    }, // CO
    PhoneRule {
        cc: "51",
        min: 8,
        max: 9,
        first: ANY,
    }, // PE
    PhoneRule {
        cc: "60",
        min: 8,
        max: 10,
        first: ANY,
    }, // MY
    PhoneRule {
        cc: "62",
        min: 8,
        max: 12,
        first: ANY,
    }, // ID
    PhoneRule {
        cc: "63",
        min: 9,
        max: 10,
        first: ANY,
    }, // PH
    PhoneRule {
        cc: "66",
        min: 8,
        max: 9,
        first: ANY,
    }, // TH
    PhoneRule {
        cc: "84",
        min: 9,
        max: 10,
        first: ANY,
    }, // VN
    PhoneRule {
        cc: "92",
        min: 10,
        max: 10,
        first: ANY,
    }, // PK
    PhoneRule {
        cc: "20",
        min: 9,
        max: 10,
        first: ANY,
    }, // EG
    PhoneRule {
        cc: "234",
        min: 8,
        max: 10,
        first: ANY,
    }, // NG
    PhoneRule {
        cc: "254",
        min: 9,
        max: 9,
        first: ANY,
    }, // KE
    PhoneRule {
        cc: "972",
        min: 8,
        max: 9,
        first: ANY,
    }, // IL
    PhoneRule {
        cc: "966",
        min: 9,
        max: 9,
        first: ANY,
    }, // SA
    PhoneRule {
        cc: "380",
        min: 9,
        max: 9,
        first: ANY,
    }, // UA
    PhoneRule {
        cc: "352",
        min: 6,
        max: 11,
        first: ANY,
    }, // LU
    PhoneRule {
        cc: "354",
        min: 7,
        max: 9,
        first: ANY,
    }, // IS
    PhoneRule {
        cc: "370",
        min: 8,
        max: 8,
        first: ANY,
    }, // LT
    PhoneRule {
        cc: "371",
        min: 8,
        max: 8,
        first: ANY,
    }, // LV
    PhoneRule {
        cc: "372",
        min: 7,
        max: 8,
        first: ANY,
    }, // EE
    PhoneRule {
        cc: "385",
        min: 8,
        max: 9,
        first: ANY,
    }, // HR
    PhoneRule {
        cc: "386",
        min: 8,
        max: 8,
        first: ANY,
    }, // SI
    PhoneRule {
        cc: "852",
        min: 8,
        max: 8,
        first: ANY,
    }, // HK
    PhoneRule {
        cc: "886",
        min: 8,
        max: 9,
        first: ANY,
    }, // TW
];

/// Finds the rule whose calling code prefixes `digits` (codes are prefix-free).
pub(crate) fn phone_rule(digits: &[u8]) -> Option<&'static PhoneRule> {
    PHONE_RULES
        .iter()
        .find(|r| digits.starts_with(r.cc.as_bytes()))
}

/// Whether `cc` is a plausible, not-listed E.164 country code start (no 0, and not +1).
pub(crate) fn plausible_cc(first: u8) -> bool {
    matches!(first, b'2'..=b'9')
}

/// IBAN rules of one country: total length and, where known, the BBAN shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IbanRule {
    /// ISO 3166 country code.
    pub(crate) cc: [u8; 2],
    /// Total IBAN length (alphanumerics, no spaces).
    pub(crate) len: u8,
    /// BBAN shape as (count, class) runs: `n` digits, `a` upper-case letters, `c` alphanumerics.
    pub(crate) bban: &'static [(u8, u8)],
}

macro_rules! iban {
    ($cc:literal, $len:literal) => {
        IbanRule { cc: *$cc, len: $len, bban: &[] }
    };
    ($cc:literal, $len:literal, [$(($n:literal, $c:literal)),*]) => {
        IbanRule { cc: *$cc, len: $len, bban: &[$(($n, $c)),*] }
    };
}

/// The SWIFT IBAN registry lengths; BBAN shapes for the most common countries.
pub(crate) const IBAN_RULES: &[IbanRule] = &[
    iban!(b"AD", 24),
    iban!(b"AE", 23),
    iban!(b"AL", 28),
    iban!(b"AT", 20, [(16, b'n')]),
    iban!(b"AZ", 28),
    iban!(b"BA", 20),
    iban!(b"BE", 16, [(12, b'n')]),
    iban!(b"BG", 22),
    iban!(b"BH", 22),
    iban!(b"BR", 29),
    iban!(b"BY", 28),
    iban!(b"CH", 21, [(5, b'n'), (12, b'c')]),
    iban!(b"CR", 22),
    iban!(b"CY", 28),
    iban!(b"CZ", 24, [(20, b'n')]),
    iban!(b"DE", 22, [(18, b'n')]),
    iban!(b"DK", 18, [(14, b'n')]),
    iban!(b"DO", 28),
    iban!(b"EE", 20),
    iban!(b"EG", 29),
    iban!(b"ES", 24, [(20, b'n')]),
    iban!(b"FI", 18, [(14, b'n')]),
    iban!(b"FO", 18),
    iban!(b"FR", 27, [(10, b'n'), (11, b'c'), (2, b'n')]),
    iban!(b"GB", 22, [(4, b'a'), (14, b'n')]),
    iban!(b"GE", 22),
    iban!(b"GI", 23),
    iban!(b"GL", 18),
    iban!(b"GR", 27),
    iban!(b"GT", 28),
    iban!(b"HR", 21),
    iban!(b"HU", 28),
    iban!(b"IE", 22, [(4, b'a'), (14, b'n')]),
    iban!(b"IL", 23),
    iban!(b"IQ", 23),
    iban!(b"IS", 26),
    iban!(b"IT", 27, [(1, b'a'), (10, b'n'), (12, b'c')]),
    iban!(b"JO", 30),
    iban!(b"KW", 30),
    iban!(b"KZ", 20),
    iban!(b"LB", 28),
    iban!(b"LC", 32),
    iban!(b"LI", 21),
    iban!(b"LT", 20),
    iban!(b"LU", 20, [(3, b'n'), (13, b'c')]),
    iban!(b"LV", 21),
    iban!(b"MC", 27),
    iban!(b"MD", 24),
    iban!(b"ME", 22),
    iban!(b"MK", 19),
    iban!(b"MR", 27),
    iban!(b"MT", 31),
    iban!(b"MU", 30),
    iban!(b"NL", 18, [(4, b'a'), (10, b'n')]),
    iban!(b"NO", 15, [(11, b'n')]),
    iban!(b"PK", 24),
    iban!(b"PL", 28, [(24, b'n')]),
    iban!(b"PS", 29),
    iban!(b"PT", 25, [(21, b'n')]),
    iban!(b"QA", 29),
    iban!(b"RO", 24),
    iban!(b"RS", 22),
    iban!(b"SA", 24),
    iban!(b"SC", 31),
    iban!(b"SE", 24, [(20, b'n')]),
    iban!(b"SI", 19),
    iban!(b"SK", 24),
    iban!(b"SM", 27),
    iban!(b"ST", 25),
    iban!(b"SV", 28),
    iban!(b"TL", 23),
    iban!(b"TN", 24),
    iban!(b"TR", 26),
    iban!(b"UA", 29),
    iban!(b"VA", 22),
    iban!(b"VG", 24),
    iban!(b"XK", 20),
];

/// The IBAN rule of a country code (upper-case letters).
pub(crate) fn iban_rule(cc: [u8; 2]) -> Option<&'static IbanRule> {
    IBAN_RULES.iter().find(|r| r.cc == cc)
}

/// Whether the BBAN (alphanumerics after the 4-character header) matches the country's shape.
pub(crate) fn bban_ok(rule: &IbanRule, bban: &[u8]) -> bool {
    if rule.bban.is_empty() {
        return bban.iter().all(u8::is_ascii_alphanumeric);
    }
    let mut i = 0usize;
    for &(n, class) in rule.bban {
        for _ in 0..n {
            let Some(&b) = bban.get(i) else { return false };
            let ok = match class {
                b'n' => b.is_ascii_digit(),
                b'a' => b.is_ascii_uppercase(),
                _ => b.is_ascii_digit() || b.is_ascii_uppercase(),
            };
            if !ok {
                return false;
            }
            i += 1;
        }
    }
    i == bban.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iban_shapes_match_lengths() {
        for r in IBAN_RULES {
            if !r.bban.is_empty() {
                let n: u32 = r.bban.iter().map(|&(n, _)| u32::from(n)).sum();
                assert_eq!(n + 4, u32::from(r.len), "{:?}", std::str::from_utf8(&r.cc));
            }
        }
    }

    #[test]
    fn phone_codes_are_prefix_free() {
        for a in PHONE_RULES {
            for b in PHONE_RULES {
                if a.cc != b.cc {
                    assert!(!a.cc.starts_with(b.cc), "{} {}", a.cc, b.cc);
                }
            }
        }
    }
}
