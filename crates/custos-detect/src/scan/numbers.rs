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

/// Card numbers: 13-19 digits, compact or in consistent groups, a known IIN, and Luhn.
pub(super) fn card(groups: &[Group], d: &[u8]) -> Option<f32> {
    let n = d.len();
    if !(13..=19).contains(&n) {
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
    let p2 = digits_value(&d[..2]);
    let p3 = digits_value(&d[..3]);
    let p4 = digits_value(&d[..4]);
    let p6 = digits_value(&d[..6]);
    let brand_ok = match d[0] {
        b'4' => matches!(n, 13 | 16 | 19),
        b'5' => (51..=55).contains(&p2) && n == 16,
        b'2' => (2221..=2720).contains(&p4) && n == 16,
        b'3' => {
            ((p2 == 34 || p2 == 37) && n == 15)
                || ((3528..=3589).contains(&p4) && n >= 16)
                || (((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39) && n >= 14)
        }
        b'6' => {
            (p4 == 6011
                || (644..=649).contains(&p3)
                || p2 == 65
                || (622_126..=622_925).contains(&p6)
                || p2 == 62)
                && n >= 16
        }
        _ => false,
    };
    (brand_ok && luhn(d)).then_some(0.85)
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
    /// Written with separators or a country code, with its base score.
    Formatted(f32),
    /// Ten bare digits: needs context.
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

/// Phone numbers: NANP in the usual US forms, or `+CC` international numbers.
pub(super) fn phone(groups: &[Group], d: &[u8], lead: u8) -> Option<PhoneForm> {
    let lens = |k: usize| groups.get(k).map_or(0, Group::len);
    let consistent = |from: usize| {
        groups
            .get(from + 1..)
            .is_some_and(|gs| gs.iter().all(|g| g.sep == groups[from + 1].sep))
    };
    let seps_ok = groups[1..]
        .iter()
        .all(|g| matches!(g.sep, b' ' | b'-' | b'.' | b')'));
    if !seps_ok {
        return None;
    }
    if lead == b'+' {
        if d.len() < 8 || d.len() > 15 {
            return None;
        }
        if d[0] == b'1' {
            let nat = &d[1..];
            let shape = match groups.len() {
                1 => d.len() == 11,
                2 => lens(0) == 1 && lens(1) == 10,
                4 => lens(0) == 1 && lens(1) == 3 && lens(2) == 3 && lens(3) == 4,
                _ => false,
            };
            return (shape && nanp_ok(nat)).then_some(PhoneForm::Formatted(0.85));
        }
        if let Some(rule) = tables::phone_rule(d) {
            let cc = rule.cc.len();
            // With separators, the country code stands alone as the first group.
            if groups.len() > 1 && lens(0) != cc {
                return None;
            }
            // "+49 (0)30 ...": the bracketed trunk zero is not dialled from abroad.
            let trunk =
                groups.len() > 2 && groups[1].paren && lens(1) == 1 && d.get(cc) == Some(&b'0');
            let nat = &d[cc + usize::from(trunk)..];
            let ok = (usize::from(rule.min)..=usize::from(rule.max)).contains(&nat.len())
                && nat.first().is_some_and(|f| rule.first.contains(f));
            return ok.then_some(PhoneForm::Formatted(0.8));
        }
        // Unknown country: plausible E.164 only, scored below the default threshold.
        return (tables::plausible_cc(d[0]) && groups.len() > 1)
            .then_some(PhoneForm::Formatted(0.45));
    }
    match d.len() {
        10 => {
            if !nanp_ok(d) {
                return None;
            }
            match groups.len() {
                1 => Some(PhoneForm::Bare),
                3 if lens(0) == 3 && lens(1) == 3 && lens(2) == 4 => {
                    if groups[0].paren {
                        matches!(groups[2].sep, b'-' | b' ' | b'.')
                            .then_some(PhoneForm::Formatted(0.8))
                    } else if consistent(0) && groups[1].sep != b')' {
                        let base = if groups[1].sep == b' ' { 0.6 } else { 0.7 };
                        Some(PhoneForm::Formatted(base))
                    } else {
                        None
                    }
                }
                _ => None,
            }
        }
        11 if d[0] == b'1' => {
            if !nanp_ok(&d[1..]) {
                return None;
            }
            let shape = groups.len() == 4
                && lens(0) == 1
                && lens(1) == 3
                && lens(2) == 3
                && lens(3) == 4
                && (groups[1].paren || consistent(0))
                && groups[3].sep != b')';
            shape.then_some(PhoneForm::Formatted(0.75))
        }
        _ => None,
    }
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
