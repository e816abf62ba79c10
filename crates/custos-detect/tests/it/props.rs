//! Property tests: the detector never panics, and its output is always well formed.

use std::sync::OnceLock;

use custos_detect::{Detector, DetectorConfig, PiiKind};
use proptest::prelude::*;

fn det() -> &'static Detector {
    static D: OnceLock<Detector> = OnceLock::new();
    D.get_or_init(|| Detector::new(DetectorConfig::default()).unwrap())
}

/// Text made of PII-ish fragments, digits and separators, so that the scanner's edge cases
/// (truncated groups, glued separators) come up often.
fn fragments() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("718-574-5483".to_string()),
        Just("+1 205 452 1736".to_string()),
        Just("123-45-6789".to_string()),
        Just("4111 1111 1111 1111".to_string()),
        Just("DE89 3704 0044 0532 0130 00".to_string()),
        Just("2001:db8::1".to_string()),
        Just("10.0.0.1".to_string()),
        Just("a@b.co".to_string()),
        Just("Morgan Bennett".to_string()),
        Just("228 Ramirez Fords, Wongton, PA 88725".to_string()),
        Just("born 1990-01-02".to_string()),
        // Tagger anchors: non-ASCII capitals, titles, particles, glued street types.
        Just("Mme Élodie Lefèvre".to_string()),
        Just("Dr. ".to_string()),
        Just("Jan van der ".to_string()),
        Just("Łukasz Wiśniewski".to_string()),
        Just("Hauptstraße 12, 10115 Berlin".to_string()),
        Just("12 rue ".to_string()),
        Just(". ".to_string()),
        Just("\n".to_string()),
        "[A-ZÀ-Ž][a-zà-ž]{1,6} ",
        "[0-9 .:()+@-]{0,12}",
        "[A-Za-z]{1,8}",
        "\\PC{0,6}",
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

fn check(text: &str) {
    let f = det().detect(text);
    for w in f.windows(2) {
        assert!(w[0].end <= w[1].start, "overlap in {text:?}: {f:?}");
    }
    for x in &f {
        assert!(x.start < x.end && x.end <= text.len());
        assert!(text.is_char_boundary(x.start) && text.is_char_boundary(x.end));
        assert!((0.5..=1.0).contains(&x.score));
    }
    let _ = det().classify_value(text);
}

proptest! {
    #[test]
    fn arbitrary_unicode_never_panics(text in "\\PC{0,200}") {
        check(&text);
    }

    #[test]
    fn fragments_are_well_formed(text in fragments()) {
        check(&text);
    }

    #[test]
    fn valid_ssns_are_found(area in 1u32..900, group in 1u32..100, serial in 1u32..10000) {
        prop_assume!(area != 666);
        let text = format!("SSN: {area:03}-{group:02}-{serial:04}.");
        let f = det().detect(&text);
        prop_assert_eq!(f.len(), 1);
        prop_assert_eq!(f[0].kind, PiiKind::Ssn);
        prop_assert_eq!(&text[f[0].start..f[0].end], &text[5..16]);
    }

    #[test]
    fn luhn_failures_are_never_cards(body in "[1-9][0-9]{14}", bump in 1u8..10) {
        // Make a Luhn-valid number, then break its check digit.
        let digits: Vec<u32> = body.bytes().map(|b| u32::from(b - b'0')).collect();
        let mut sum = 0;
        for (i, d) in digits.iter().rev().enumerate() {
            let mut d = *d;
            if i % 2 == 0 { d *= 2; if d > 9 { d -= 9; } }
            sum += d;
        }
        let check = (10 - sum % 10) % 10;
        let bad = (check + u32::from(bump)) % 10;
        let text = format!("card {body}{bad}");
        prop_assert!(det().detect(&text).iter().all(|f| f.kind != PiiKind::Card));
    }
}
