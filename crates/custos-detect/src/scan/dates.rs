//! Dates written with month names ("March 12, 1984", "12 Mar 1984"); numeric dates are
//! digit groups and live in `numbers`.

use super::numbers::valid_date;
use super::{Group, Mode, Scan, is_word};
use crate::Finding;
use crate::PiiKind;
use crate::checksum::digits_value;
use crate::context::Ctx;
use crate::dict;

impl<F: FnMut(Finding)> Scan<'_, F> {
    /// A date is a date of birth only with a word like "born" or "dob" near it; a whole cell
    /// scores in between so a column named for birth dates can confirm it.
    pub(super) fn date_score(&self, cx: Ctx) -> f32 {
        match self.mode {
            Mode::Cell => 0.6,
            Mode::Text if cx.pos.has(PiiKind::DateOfBirth) => 0.9,
            Mode::Text => 0.3,
        }
    }

    /// "5 January 1990" / "5 Jan, 1990": `g` is the day.
    pub(super) fn date_day_first(&mut self, g: Group) -> Option<usize> {
        let day = digits_value(&self.b[g.s..g.e]);
        if self.at(g.e) != b' ' || !self.at(g.e + 1).is_ascii_alphabetic() {
            return None;
        }
        let ws = g.e + 1;
        let we = self.alpha_end(ws);
        let month = dict::month(&self.b[ws..we])?;
        let mut j = we;
        if self.at(j) == b'.' {
            j += 1;
        }
        if self.at(j) == b',' {
            j += 1;
        }
        if self.at(j) != b' ' {
            return None;
        }
        let (year, e) = self.year_at(j + 1)?;
        if !valid_date(year, u32::from(month), day as u32) {
            return None;
        }
        let cx = self.ctx(g.s, e);
        let score = self.date_score(cx);
        self.push(PiiKind::DateOfBirth, g.s, e, score);
        Some(e)
    }

    /// "January 5, 1990" starting at the month word `ws..we`.
    pub(super) fn date_month_first(&mut self, ws: usize, we: usize) -> Option<usize> {
        let month = dict::month(&self.b[ws..we])?;
        let mut j = we;
        if self.at(j) == b'.' {
            j += 1;
        }
        if self.at(j) != b' ' {
            return None;
        }
        let ds = j + 1;
        let mut de = ds;
        while de < self.b.len() && de - ds < 2 && self.b[de].is_ascii_digit() {
            de += 1;
        }
        if de == ds {
            return None;
        }
        let day = digits_value(&self.b[ds..de]);
        let mut k = de;
        if matches!(
            &self.b[k..self.b.len().min(k + 2)],
            b"st" | b"nd" | b"rd" | b"th"
        ) {
            k += 2;
        }
        if self.at(k) == b',' {
            k += 1;
        }
        if self.at(k) != b' ' {
            return None;
        }
        let (year, e) = self.year_at(k + 1)?;
        if !valid_date(year, u32::from(month), day as u32) {
            return None;
        }
        let cx = self.ctx(ws, e);
        let score = self.date_score(cx);
        self.push(PiiKind::DateOfBirth, ws, e, score);
        Some(e)
    }

    /// A four-digit year 1900..=2099 at `i`, ending at a word boundary.
    pub(super) fn year_at(&self, i: usize) -> Option<(u32, usize)> {
        let y = self.b.get(i..i + 4)?;
        if !y.iter().all(u8::is_ascii_digit) || is_word(self.at(i + 4)) {
            return None;
        }
        let year = digits_value(y) as u32;
        (1900..=2099).contains(&year).then_some((year, i + 4))
    }
}
