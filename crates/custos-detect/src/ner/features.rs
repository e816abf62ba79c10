//! Tokens and CRF features, exactly as `train/train_crf.py` computes them for training (the
//! `ner_features` integration test compares both on a fixture the script writes).

use crate::dict::{Dicts, WordSet};

/// One token: a run of alphanumerics or one other non-space character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    /// Byte offset of the first byte.
    pub(crate) s: usize,
    /// Byte offset after the last byte.
    pub(crate) e: usize,
    /// Whether a line break comes between this token and the previous one.
    pub(crate) nl: bool,
}

/// Appends the tokens of `text` to `out` (offsets relative to `text`).
pub(crate) fn tokenize(text: &str, out: &mut Vec<Token>) {
    let mut it = text.char_indices().peekable();
    let mut nl = false;
    while let Some((i, c)) = it.next() {
        if c.is_whitespace() {
            nl |= c == '\n';
            continue;
        }
        let mut e = i + c.len_utf8();
        if c.is_alphanumeric() {
            while let Some(&(j, d)) = it.peek() {
                if !d.is_alphanumeric() {
                    break;
                }
                e = j + d.len_utf8();
                it.next();
            }
        }
        out.push(Token { s: i, e, nl });
        nl = false;
    }
}

/// The word's shape: X upper, x lower, d digit, o other letters, anything else itself; runs
/// collapsed, at most six ("McPherson" is "XxXx", "D185PNW" is "XdX").
fn shape(w: &str) -> String {
    let mut out = String::new();
    let mut last = None;
    let mut runs = 0;
    for c in w.chars() {
        let s = if c.is_ascii_digit() {
            'd'
        } else if c.is_uppercase() {
            'X'
        } else if c.is_lowercase() {
            'x'
        } else if c.is_alphanumeric() {
            'o'
        } else {
            c
        };
        if last != Some(s) {
            if runs < 6 {
                out.push(s);
            }
            runs += 1;
            last = Some(s);
        }
    }
    out
}

/// The first `n` characters.
fn head(w: &str, n: usize) -> &str {
    match w.char_indices().nth(n) {
        Some((i, _)) => &w[..i],
        None => w,
    }
}

/// The last `n` characters.
fn tail(w: &str, n: usize) -> &str {
    if n == 0 {
        return &w[w.len()..];
    }
    match w.char_indices().rev().nth(n - 1) {
        Some((i, _)) => &w[i..],
        None => w,
    }
}

fn has(set: &WordSet, w: &str) -> bool {
    set.contains(w.as_bytes())
}

/// US state codes, as the training script lists them.
const US_STATES: &[&str] = &[
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
    "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM",
    "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA",
    "WV", "WI", "WY", "PR", "GU", "VI", "AS", "MP", "FM", "MH", "PW", "AA", "AE", "AP",
];

/// Dictionary and layout flags of one token.
fn flags(d: &Dicts, w: &str, lw: &str, nl: bool) -> Vec<&'static str> {
    let mut f = Vec::new();
    if has(&d.given_intl, lw) {
        f.push("G");
    }
    if has(&d.surnames_intl, lw) {
        f.push("S");
    }
    if has(&d.titles, lw) {
        f.push("T");
    }
    let chars = lw.chars().count();
    if has(&d.street_words, lw) {
        f.push("R");
    } else if chars >= 6 {
        // A street type glued to the name: "Kerkstraat", "Hauptstraße", "Storgatan".
        let glued = (3..=(chars - 2).min(8)).any(|k| {
            let t = tail(lw, k);
            t.chars().count() >= 3 && has(&d.street_words, t)
        });
        if glued {
            f.push("RG");
        }
    }
    if US_STATES.contains(&w) {
        f.push("US");
    }
    if nl {
        f.push("NL");
    }
    f
}

/// Per-token properties the features are built from.
pub(crate) struct Props {
    lw: String,
    shape: String,
    digits: Option<String>,
    flags: Vec<&'static str>,
}

/// The properties of every token in `toks` (offsets into `text`).
pub(crate) fn props(d: &Dicts, text: &str, toks: &[Token]) -> Vec<Props> {
    toks.iter()
        .map(|t| {
            let w = text.get(t.s..t.e).unwrap_or_default();
            let lw = w.to_lowercase();
            let flags = flags(d, w, &lw, t.nl);
            let shape = shape(w);
            let digits = (shape == "d").then(|| lw.chars().count().to_string());
            Props {
                shape,
                lw,
                digits,
                flags,
            }
        })
        .collect()
}

/// Receives each feature of a token as the pieces its name is made of.
pub(crate) trait Sink {
    /// One feature whose name is `parts` concatenated.
    fn feature(&mut self, parts: &[&str]);
}

/// Offsets of the neighbours each token's features look at, with their names.
const NEIGHBOURS: [(isize, &str); 4] = [(-2, "-2"), (-1, "-1"), (1, "1"), (2, "2")];

/// Feeds the features of token `i` to `sink`, in the training script's order.
pub(crate) fn token_features(props: &[Props], i: usize, sink: &mut impl Sink) {
    let Some(p) = props.get(i) else {
        return;
    };
    sink.feature(&["b"]);
    sink.feature(&["w=", &p.lw]);
    sink.feature(&["s=", &p.shape]);
    sink.feature(&["p3=", head(&p.lw, 3)]);
    sink.feature(&["x3=", tail(&p.lw, 3)]);
    sink.feature(&["x2=", tail(&p.lw, 2)]);
    if let Some(n) = &p.digits {
        sink.feature(&["dl=", n]);
    }
    for f in &p.flags {
        sink.feature(&["f=", f]);
    }
    for (o, name) in NEIGHBOURS {
        let Some(j) = i.checked_add_signed(o) else {
            sink.feature(&[name, ":B"]);
            continue;
        };
        let Some(q) = props.get(j) else {
            sink.feature(&[name, ":E"]);
            continue;
        };
        sink.feature(&[name, ":w=", &q.lw]);
        sink.feature(&[name, ":s=", &q.shape]);
        for f in &q.flags {
            sink.feature(&[name, ":f=", f]);
        }
    }
}

/// Collects feature names as strings (the form the training script writes).
impl Sink for Vec<String> {
    fn feature(&mut self, parts: &[&str]) {
        self.push(parts.concat());
    }
}

/// The feature names of every token in `toks`, as strings (tests and the fixture check).
#[cfg(test)]
pub(crate) fn features(d: &Dicts, text: &str, toks: &[Token]) -> Vec<Vec<String>> {
    let props = props(d, text, toks);
    (0..props.len())
        .map(|i| {
            let mut f: Vec<String> = Vec::new();
            token_features(&props, i, &mut f);
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dict::dicts;

    fn toks(text: &str) -> Vec<&str> {
        let mut v = Vec::new();
        tokenize(text, &mut v);
        v.iter().map(|t| &text[t.s..t.e]).collect()
    }

    #[test]
    fn tokens() {
        assert_eq!(
            toks("Zoë O'Brien, 12 rue de la Paix"),
            [
                "Zoë", "O", "'", "Brien", ",", "12", "rue", "de", "la", "Paix"
            ]
        );
        assert!(toks(" \n\t").is_empty());
        let mut v = Vec::new();
        tokenize("a\n b", &mut v);
        assert_eq!((v[0].nl, v[1].nl), (false, true));
    }

    #[test]
    fn shapes_and_affixes() {
        assert_eq!(shape("McPherson"), "XxXx");
        assert_eq!(shape("D185PNW"), "XdX");
        assert_eq!(shape("12-34"), "d-d");
        assert_eq!(shape("Élodie"), "Xx");
        assert_eq!(head("élodie", 3), "élo");
        assert_eq!(tail("straße", 3), "aße");
        assert_eq!(tail("ab", 3), "ab");
    }

    #[test]
    fn dictionary_flags() {
        let d = dicts();
        assert_eq!(flags(d, "Kerkstraat", "kerkstraat", false), ["RG"]);
        assert!(flags(d, "Mme", "mme", false).contains(&"T"));
        assert!(flags(d, "rue", "rue", true).contains(&"NL"));
        assert!(flags(d, "NY", "ny", false).contains(&"US"));
        let f = features(
            d,
            "Dr. Ann",
            &[Token {
                s: 0,
                e: 2,
                nl: false,
            }],
        );
        assert_eq!(f[0][..3], ["b", "w=dr", "s=Xx"]);
        assert!(f[0].contains(&"1:E".to_owned()) && f[0].contains(&"-1:B".to_owned()));
    }

    /// The training script's tokens and features (`tests/fixtures/ner_features.jsonl`, written
    /// by `train/train_crf.py`) must be reproduced exactly, or the model is fed other inputs
    /// than it was trained on.
    #[test]
    fn matches_training_fixture() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ner_features.jsonl"
        );
        let src = std::fs::read_to_string(path).unwrap();
        let mut n = 0;
        for line in src.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = v["text"].as_str().unwrap();
            let mut toks = Vec::new();
            tokenize(text, &mut toks);
            let want_toks: Vec<(usize, usize)> =
                serde_json::from_value(v["tokens"].clone()).unwrap();
            let got_toks: Vec<(usize, usize)> = toks.iter().map(|t| (t.s, t.e)).collect();
            assert_eq!(got_toks, want_toks, "tokens of {text:?}");
            let want: Vec<Vec<String>> = serde_json::from_value(v["features"].clone()).unwrap();
            assert_eq!(features(dicts(), text, &toks), want, "features of {text:?}");
            n += 1;
        }
        assert!(n >= 50, "fixture has {n} sentences");
    }
}
