//! Validators for digit groups: cards, SSNs, phone numbers, IPv4 and numeric dates.

use std::net::Ipv4Addr;
use std::str::FromStr;

use super::{Chunk, Group, MAX_GROUPS};
use crate::checksum::{digits_value, luhn, ssn_parts_valid};
use crate::tables;

/// Sub-spans of a chunk must not cut through a run of the same separator: "1.2.3.4.5" holds no
/// IPv4 address, and "7185745483-12" no phone number. A space or a port colon may end a span.
pub(super) fn boundaries_ok(c: &Chunk, a: usize, z: usize) -> bool {
    let inner = if z > a { c.g[z].sep } else { 0 };
    let left_ok = a == 0 || {
        let s = c.g[a].sep;
        s == b' ' && inner != b' '
    };
    let right_ok = z + 1 == c.n || {
        let s = c.g[z + 1].sep;
        (s == b' ' && inner != b' ') || (s == b':' && inner == b'.')
    };
    left_ok && right_ok
}

/// Card numbers: 12-19 digits, compact or in consistent groups, an ISO/IEC 7812 issuer range
/// of a known brand, and Luhn. Returns the base score.
pub(super) fn card(groups: &[Group], d: &[u8]) -> Option<f32> {
    let n = d.len();
    if !(12..=19).contains(&n) {
        return None;
    }
    if groups.len() > 1 {
        let sep = groups[1].sep;
        if !matches!(sep, b' ' | b'-')
            || groups.iter().any(|g| g.paren)
            || groups[1..].iter().any(|g| g.sep != sep)
        {
            return None;
        }
        let lens: [usize; MAX_GROUPS] = {
            let mut l = [0; MAX_GROUPS];
            for (k, g) in groups.iter().enumerate() {
                l[k] = g.len();
            }
            l
        };
        let lens = &lens[..groups.len()];
        let fours = lens[..lens.len() - 1].iter().all(|&l| l == 4)
            && (1..=4).contains(&lens[lens.len() - 1]);
        let amex = lens == [4, 6, 5] || lens == [4, 6, 4];
        if !fours && !amex {
            return None;
        }
    }
    if !luhn(d) {
        return None;
    }
    let p2 = digits_value(&d[..2]);
    let p3 = digits_value(&d[..3]);
    let p4 = digits_value(&d[..4]);
    let p6 = digits_value(&d[..6]);
    let full = (16..=19).contains(&n);
    // Maestro's ranges: short (12-19 digit) numbers that only a card context makes likely.
    let maestro = matches!(
        p4,
        5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761..=6763 | 6390 | 604
    ) || (56..=58).contains(&p2);
    let strong = match d[0] {
        b'4' => matches!(n, 13 | 16 | 19),
        b'5' => (51..=55).contains(&p2) && n == 16,
        // Mastercard's 2-series, and Mir (2200-2204).
        b'2' => {
            ((2221..=2720).contains(&p4) && n == 16)
                || ((2200..=2204).contains(&p4) && full)
                || (p4 == 2131 && n == 15)
        }
        // JCB's old 15-digit range.
        b'1' => p4 == 1800 && n == 15,
        b'3' => {
            ((p2 == 34 || p2 == 37) && n == 15)
                || (p2 == 35 && full)
                || (((300..=305).contains(&p3) || p4 == 3095 || p2 == 36 || p2 == 38 || p2 == 39)
                    && n >= 14)
        }
        // Discover, UnionPay (62), RuPay (60, 65).
        b'6' => {
            (p4 == 6011
                || (644..=649).contains(&p3)
                || p2 == 65
                || p2 == 60
                || (622_126..=622_925).contains(&p6)
                || p2 == 62)
                && full
        }
        // RuPay's 81/82 and 508 ranges.
        b'8' => (p2 == 81 || p2 == 82) && n == 16,
        _ => false,
    } || (p3 == 508 && n == 16);
    if strong {
        Some(0.85)
    } else if maestro {
        Some(0.6)
    } else {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum SsnForm {
    Dashed,
    Spaced,
    Bare,
}

/// SSNs: 3-2-4 with dashes or spaces, or nine bare digits, with the structural rules.
pub(super) fn ssn(groups: &[Group], d: &[u8]) -> Option<SsnForm> {
    if d.len() != 9 {
        return None;
    }
    let form = match groups {
        [_] => SsnForm::Bare,
        [a, b, c] if a.len() == 3 && b.len() == 2 && c.len() == 4 && b.sep == c.sep && !a.paren => {
            match b.sep {
                b'-' => SsnForm::Dashed,
                b' ' => SsnForm::Spaced,
                _ => return None,
            }
        }
        _ => return None,
    };
    let area = digits_value(&d[..3]) as u32;
    let group = digits_value(&d[3..5]) as u32;
    let serial = digits_value(&d[5..]) as u32;
    ssn_parts_valid(area, group, serial).then_some(form)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum PhoneForm {
    /// Written so that it reads as a phone number by itself, with its base score.
    Formatted(f32),
    /// Digits of a phone number's length whose writing proves nothing (bare, or in two or
    /// three groups that could be an order number): needs a context word.
    Bare,
}

/// NANP area code and exchange: NXX, not N11.
pub(super) fn nanp_ok(d: &[u8]) -> bool {
    d.len() == 10
        && matches!(d[0], b'2'..=b'9')
        && !(d[1] == b'1' && d[2] == b'1')
        && matches!(d[3], b'2'..=b'9')
        && !(d[4] == b'1' && d[5] == b'1')
}

/// Phone numbers as people write them: NANP, `+CC` or `00` international, and national
/// numbers with a trunk `0` or an area code in parentheses. Shape decides the base score;
/// what no shape proves ([`PhoneForm::Bare`]) is left to context words, so dates, versions and
/// order numbers are kept out by context rather than by strict numbering rules.
pub(super) fn phone(groups: &[Group], d: &[u8], lead: u8) -> Option<PhoneForm> {
    let lens = |k: usize| groups.get(k).map_or(0, Group::len);
    let consistent = |from: usize| {
        groups
            .get(from + 1..)
            .is_some_and(|gs| gs.iter().all(|g| g.sep == groups[from + 1].sep))
    };
    let slash_ok = groups.len() == 2;
    let seps_ok = groups[1..]
        .iter()
        .all(|g| matches!(g.sep, b' ' | b'-' | b'.' | b')' | b'(') || (slash_ok && g.sep == b'/'));
    if !seps_ok || groups.iter().any(|g| g.len() > 12) {
        return None;
    }
    let n = d.len();
    if lead == b'+' {
        if !(7..=15).contains(&n) {
            return None;
        }
        if d[0] == b'1' {
            let nat = &d[1..];
            let shape = match groups.len() {
                1 => n == 11,
                2 => lens(0) == 1 && lens(1) == 10,
                4 => lens(0) == 1 && lens(1) == 3 && lens(2) == 3 && lens(3) == 4,
                _ => false,
            };
            return match (shape, nanp_ok(nat)) {
                (true, true) => Some(PhoneForm::Formatted(0.85)),
                // Well-formed but outside today's exchange rules: the "+1" still says phone.
                (true, false) => Some(PhoneForm::Formatted(0.7)),
                _ => (n == 11).then_some(PhoneForm::Formatted(0.55)),
            };
        }
        if let Some(rule) = tables::phone_rule(d) {
            let cc = rule.cc.len();
            if lens(0) < cc {
                return None;
            }
            // "+49 (0)30 ...": the bracketed trunk zero is not dialled from abroad.
            let trunk = groups.len() > 2
                && lens(0) == cc
                && groups[1].paren
                && lens(1) == 1
                && d.get(cc) == Some(&b'0');
            let nat = &d[cc + usize::from(trunk)..];
            let ok = (usize::from(rule.min)..=usize::from(rule.max)).contains(&nat.len())
                && nat.first().is_some_and(|f| rule.first.contains(f));
            return Some(PhoneForm::Formatted(if ok { 0.85 } else { 0.6 }));
        }
        // An unlisted country: a "+" before enough digits is still how phones are written.
        return (tables::plausible_cc(d[0]) && n >= 8).then_some(PhoneForm::Formatted(0.6));
    }
    // "00" / "011" international prefixes.
    if groups.len() > 1 && (10..=15).contains(&n) && d.starts_with(b"00") {
        return Some(PhoneForm::Formatted(0.75));
    }
    if groups[0].paren {
        if !(7..=13).contains(&n) || groups.len() < 2 {
            return None;
        }
        let nanp = n == 10 && lens(0) == 3 && lens(1) == 3 && lens(2) == 4;
        return Some(PhoneForm::Formatted(match (nanp, nanp_ok(d)) {
            (true, true) => 0.8,
            _ => 0.7,
        }));
    }
    if n == 10 && groups.len() == 3 && lens(0) == 3 && lens(1) == 3 && lens(2) == 4 {
        if consistent(0) && groups[1].sep != b')' {
            let base = if groups[1].sep == b' ' { 0.6 } else { 0.7 };
            // A NANP shape outside the exchange rules: likely a phone, less sure.
            return Some(PhoneForm::Formatted(if nanp_ok(d) { base } else { 0.55 }));
        }
        if groups[1].paren {
            return Some(PhoneForm::Formatted(0.7));
        }
    }
    if n == 11 && d[0] == b'1' && groups.len() == 4 {
        let shape = lens(0) == 1
            && lens(1) == 3
            && lens(2) == 3
            && lens(3) == 4
            && (groups[1].paren || consistent(0))
            && groups[3].sep != b')';
        if shape {
            return Some(PhoneForm::Formatted(if nanp_ok(&d[1..]) {
                0.75
            } else {
                0.6
            }));
        }
    }
    if n == 10 && groups.len() == 1 && nanp_ok(d) {
        return Some(PhoneForm::Bare);
    }
    if !(7..=13).contains(&n) {
        return None;
    }
    // National numbers with their trunk zero in three or more groups: "02 4177 7631",
    // "04 15 39 15 00", "080-9141-7776".
    if d[0] == b'0' && groups.len() >= 3 && n >= 9 && lens(0) <= 5 {
        return Some(PhoneForm::Formatted(0.6));
    }
    // A parenthesised area code after a trunk digit: "8 (066) 907-43-91".
    if groups.len() >= 3 && groups[1].paren {
        return Some(PhoneForm::Formatted(0.6));
    }
    Some(PhoneForm::Bare)
}

/// IPv4: four dot-separated groups that `std::net` accepts.
pub(super) fn ipv4(b: &[u8], groups: &[Group]) -> bool {
    if groups.len() != 4
        || groups[1..].iter().any(|g| g.sep != b'.')
        || groups.iter().any(|g| g.len() > 3)
    {
        return false;
    }
    let (s, e) = (groups[0].s, groups[3].e);
    std::str::from_utf8(&b[s..e])
        .ok()
        .is_some_and(|t| Ipv4Addr::from_str(t).is_ok())
}

/// Numeric dates: Y-M-D, D/M/Y or M/D/Y with `-`, `/` or `.`, and M/D/YY with `/`.
pub(super) fn date_groups(b: &[u8], groups: &[Group]) -> bool {
    let [g0, g1, g2] = groups else { return false };
    let sep = g1.sep;
    if !matches!(sep, b'-' | b'/' | b'.') || g2.sep != sep || g0.paren {
        return false;
    }
    let v = |g: &Group| digits_value(&b[g.s..g.e]) as u32;
    let (l0, l1, l2) = (g0.len(), g1.len(), g2.len());
    if l0 == 4 && (1..=2).contains(&l1) && (1..=2).contains(&l2) {
        let y = v(g0);
        return (1900..=2099).contains(&y) && valid_date(y, v(g1), v(g2));
    }
    if (1..=2).contains(&l0) && (1..=2).contains(&l1) && (l2 == 4 || (l2 == 2 && sep == b'/')) {
        let y = if l2 == 4 { v(g2) } else { 2000 };
        if l2 == 4 && !(1900..=2099).contains(&y) {
            return false;
        }
        return valid_date(y, v(g0), v(g1)) || valid_date(y, v(g1), v(g0));
    }
    false
}

/// Whether year-month-day is a real calendar date.
pub(super) fn valid_date(y: u32, m: u32, d: u32) -> bool {
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert!(valid_date(2024, 2, 29));
        assert!(!valid_date(2023, 2, 29));
        assert!(!valid_date(2023, 13, 1));
        assert!(!valid_date(2023, 4, 31));
    }

    #[test]
    fn nanp() {
        assert!(nanp_ok(b"7185745483"));
        assert!(!nanp_ok(b"1185745483"));
        assert!(!nanp_ok(b"7181745483"));
        assert!(!nanp_ok(b"2115745483"));
    }
}
