//! US street addresses: house number, street words ending in a known suffix, optional unit,
//! optional city, state and ZIP; and military APO/FPO/DPO addresses.

use super::{Scan, is_word};
use crate::dict;
use crate::{Finding, PiiKind};

impl<F: FnMut(Finding)> Scan<'_, F> {
    /// A US street address whose house number is `ns..ne`.
    pub(super) fn address(&mut self, ns: usize, ne: usize) -> Option<usize> {
        let b = self.b;
        let mut j = ne;
        let mut words = 0;
        let mut street_end = None;
        while words < 6 && self.at(j) == b' ' {
            let ws = j + 1;
            let Some(we) = self.street_word(ws) else {
                break;
            };
            words += 1;
            if words >= 2 && dict::contains(&self.dicts.street, &b[ws..we]) {
                street_end = Some(we);
            }
            j = we;
        }
        let mut e = street_end?;
        let mut score: f32 = 0.6;
        // Directional after the suffix: "Pennsylvania Avenue NW".
        if self.at(e) == b' ' {
            let ws = e + 1;
            let we = self.alpha_end(ws);
            if matches!(
                &b[ws..we],
                b"N" | b"S" | b"E" | b"W" | b"NE" | b"NW" | b"SE" | b"SW"
            ) && !is_word(self.at(we))
            {
                e = we;
            }
        }
        if let Some(se) = self.secondary(e) {
            e = se;
            score += 0.1;
        }
        if let Some((ce, zip)) = self.city_state_zip(e) {
            e = ce;
            score = if zip { 0.9 } else { 0.85 };
        }
        let cx = self.ctx(ns, e);
        if cx.pos.has(PiiKind::Address) {
            score += 0.1;
        }
        self.push(PiiKind::Address, ns, e, score);
        Some(e)
    }

    /// A word of a street name at `i`: capitalised ("Ramirez"), ordinal ("5th") or a
    /// directional ("N"); returns its end.
    pub(super) fn street_word(&self, i: usize) -> Option<usize> {
        let b = self.b;
        let c = self.at(i);
        if c.is_ascii_uppercase() {
            let e = self.alpha_end(i);
            if is_word(self.at(e)) {
                return None;
            }
            let w = &b[i..e];
            let capitalised = w.len() >= 2 && w[1..].iter().all(u8::is_ascii_lowercase);
            let directional =
                matches!(w, b"N" | b"S" | b"E" | b"W" | b"NE" | b"NW" | b"SE" | b"SW");
            return (capitalised || directional).then_some(e);
        }
        if c.is_ascii_digit() {
            let mut e = i;
            while e < b.len() && b[e].is_ascii_digit() && e - i < 4 {
                e += 1;
            }
            let suf = b.get(e..e + 2)?;
            if matches!(suf, b"st" | b"nd" | b"rd" | b"th") && !is_word(self.at(e + 2)) {
                return Some(e + 2);
            }
        }
        None
    }

    /// ", Apt. 885" / " Suite 249" / " #12" after a street; returns the new end.
    pub(super) fn secondary(&self, e: usize) -> Option<usize> {
        let mut j = e;
        if self.at(j) == b'.' {
            j += 1;
        }
        if self.at(j) == b',' {
            j += 1;
        }
        if self.at(j) != b' ' {
            return None;
        }
        j += 1;
        if self.at(j) == b'#' {
            j += 1;
        } else {
            let we = self.alpha_end(j);
            let w = &self.b[j..we];
            let unit: [&[u8]; 9] = [
                b"Suite", b"Ste", b"Apt", b"Unit", b"Fl", b"Floor", b"Rm", b"Room", b"Bldg",
            ];
            if !unit.contains(&w) {
                return None;
            }
            j = we;
            if self.at(j) == b'.' {
                j += 1;
            }
            if self.at(j) != b' ' {
                return None;
            }
            j += 1;
            if self.at(j) == b'#' {
                j += 1;
            }
        }
        let s = j;
        while j < self.b.len() && self.b[j].is_ascii_alphanumeric() && j - s < 6 {
            j += 1;
        }
        let has_digit = self.b[s..j].iter().any(u8::is_ascii_digit);
        (has_digit && !is_word(self.at(j))).then_some(j)
    }

    /// ", Wongton, PA 88725" (newline or comma before the city); returns (end, has zip).
    pub(super) fn city_state_zip(&self, e: usize) -> Option<(usize, bool)> {
        let b = self.b;
        let mut j = e;
        if self.at(j) == b'.' && matches!(self.at(j + 1), b',' | b'\n') {
            j += 1;
        }
        match self.at(j) {
            b',' => {
                j += 1;
                if self.at(j) == b' ' || self.at(j) == b'\n' {
                    j += 1;
                }
            }
            b'\n' => j += 1,
            _ => return None,
        }
        let mut words = 0;
        loop {
            let c = self.at(j);
            if !c.is_ascii_uppercase() {
                return None;
            }
            let we = self.alpha_end(j);
            if we - j < 2 || !b[j + 1..we].iter().all(u8::is_ascii_lowercase) {
                return None;
            }
            words += 1;
            j = we;
            if self.at(j) == b',' {
                j += 1;
                break;
            }
            if words == 3 || self.at(j) != b' ' || !self.at(j + 1).is_ascii_uppercase() {
                return None;
            }
            // "New York NY" without a comma: stop when the next word is a state code.
            if self.state_at(j + 1) {
                break;
            }
            j += 1;
        }
        if self.at(j) != b' ' {
            return None;
        }
        j += 1;
        if !self.state_at(j) {
            return None;
        }
        j += 2;
        if self.at(j) == b' ' {
            let z = self.b.get(j + 1..j + 6);
            if let Some(z) = z
                && z.iter().all(u8::is_ascii_digit)
            {
                let mut k = j + 6;
                if self.at(k) == b'-'
                    && self
                        .b
                        .get(k + 1..k + 5)
                        .is_some_and(|p| p.iter().all(u8::is_ascii_digit))
                {
                    k += 5;
                }
                if !is_word(self.at(k)) {
                    return Some((k, true));
                }
            }
        }
        Some((j, false))
    }

    /// Whether a US state code stands alone at `i`.
    pub(super) fn state_at(&self, i: usize) -> bool {
        match self.b.get(i..i + 2) {
            Some(s) => dict::STATES.iter().any(|st| &st[..] == s) && !is_word(self.at(i + 2)),
            None => false,
        }
    }

    /// Military addresses: "PSC 1234, Box 5678\nAPO AA 12345", "USNS Smith\nFPO AE 12345".
    pub(super) fn military(&mut self, ws: usize, we: usize) -> Option<usize> {
        let w = &self.b[ws..we];
        let mut j = we;
        if matches!(w, b"PSC" | b"Unit") {
            j = self.literal(j, b" ")?;
            j = self.digits_run(j, 3, 5)?;
            if self.at(j) == b',' {
                j += 1;
            }
            j = self.literal(j, b" Box ")?;
            j = self.digits_run(j, 3, 5)?;
        } else if matches!(w, b"USS" | b"USNS" | b"USNV" | b"USCGC") {
            j = self.literal(j, b" ")?;
            if !self.at(j).is_ascii_uppercase() {
                return None;
            }
            j = self.alpha_end(j);
        } else {
            return None;
        }
        if self.at(j) == b',' {
            j += 1;
        }
        if !matches!(self.at(j), b' ' | b'\n') {
            return None;
        }
        j += 1;
        let post = self.b.get(j..j + 3)?;
        if !matches!(post, b"APO" | b"FPO" | b"DPO") {
            return None;
        }
        j = self.literal(j + 3, b" ")?;
        if !matches!(self.b.get(j..j + 2)?, b"AA" | b"AE" | b"AP") {
            return None;
        }
        j = self.literal(j + 2, b" ")?;
        let e = self.digits_run(j, 5, 5)?;
        self.push(PiiKind::Address, ws, e, 0.85);
        Some(e)
    }

    pub(super) fn literal(&self, i: usize, lit: &[u8]) -> Option<usize> {
        (self.b.get(i..i + lit.len())? == lit).then_some(i + lit.len())
    }

    /// A run of `min..=max` digits at `i` that ends at a word boundary.
    pub(super) fn digits_run(&self, i: usize, min: usize, max: usize) -> Option<usize> {
        let mut e = i;
        while e < self.b.len() && self.b[e].is_ascii_digit() {
            e += 1;
        }
        (e - i >= min && e - i <= max && !is_word(self.at(e))).then_some(e)
    }
}
