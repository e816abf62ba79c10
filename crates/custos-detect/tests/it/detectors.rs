//! Per-detector cases: valid inputs, failing checksums, and look-alikes that must not match.

use std::sync::{Arc, OnceLock};

use custos_detect::{Checksum, CustomDetector, DetectError, Detector, DetectorConfig, PiiKind};

fn det() -> &'static Detector {
    static D: OnceLock<Detector> = OnceLock::new();
    D.get_or_init(|| Detector::new(DetectorConfig::default()).unwrap())
}

/// (kind, matched text) of every finding.
fn found(text: &str) -> Vec<(PiiKind, &str)> {
    det()
        .detect(text)
        .into_iter()
        .map(|f| (f.kind, &text[f.start..f.end]))
        .collect()
}

/// The single finding of `kind` in `text`, as text.
fn one(text: &str, kind: PiiKind) -> Option<&str> {
    let v: Vec<_> = found(text)
        .into_iter()
        .filter(|(k, _)| *k == kind)
        .collect();
    assert!(v.len() <= 1, "several {kind:?} in {text:?}: {v:?}");
    v.first().map(|(_, s)| *s)
}

fn none_of(text: &str, kind: PiiKind) {
    let v = found(text);
    assert!(
        v.iter().all(|(k, _)| *k != kind),
        "unexpected {kind:?} in {text:?}: {v:?}"
    );
}

// ---------------------------------------------------------------- email

#[test]
fn email_valid() {
    for (text, want) in [
        (
            "Contact email is jane.doe@example.org.",
            "jane.doe@example.org",
        ),
        (
            "cc: MORGAN_BENNETT2001@OROZCO-HANSEN.INFO",
            "MORGAN_BENNETT2001@OROZCO-HANSEN.INFO",
        ),
        (
            "reply to a+news@mail.co.uk when possible",
            "a+news@mail.co.uk",
        ),
        ("<x.y@uni-heidelberg.de>", "x.y@uni-heidelberg.de"),
    ] {
        assert_eq!(one(text, PiiKind::Email), Some(want), "{text}");
    }
}

#[test]
fn email_lookalikes() {
    for text in [
        "follow @handle on social",
        "user@localhost is not routable",
        "a@b.c1",
        "price 3 @ 4.50 each",
        "jane.@example.org",
        "x@-bad.com",
    ] {
        none_of(text, PiiKind::Email);
    }
}

// ---------------------------------------------------------------- phone

#[test]
fn phone_us_formats() {
    for (text, want) in [
        ("Call back at 718-574-5483 after 5pm.", "718-574-5483"),
        ("Phone: (718) 574-5483", "(718) 574-5483"),
        ("Reached the client on 718.574.5483.", "718.574.5483"),
        ("Reached the client on +1-205-452-1736.", "+1-205-452-1736"),
        ("Mobile +1 205 452 1736 is best", "+1 205 452 1736"),
        ("Phone: 7185745483", "7185745483"),
        ("call 1-800-555-0199 now", "1-800-555-0199"),
        ("tel +1 (212) 555-0100", "+1 (212) 555-0100"),
    ] {
        assert_eq!(one(text, PiiKind::Phone), Some(want), "{text}");
    }
}

#[test]
fn phone_lists() {
    let got = found("Phones: 646-555-0100,212-555-0199; fax (212) 555-0123.");
    assert_eq!(
        got,
        [
            (PiiKind::Phone, "646-555-0100"),
            (PiiKind::Phone, "212-555-0199"),
            (PiiKind::Phone, "(212) 555-0123")
        ]
    );
}

#[test]
fn phone_international() {
    for (text, want) in [
        ("Phone: +44 20 7123 4567", "+44 20 7123 4567"),
        ("Phone: +49 30 12345678", "+49 30 12345678"),
        ("Mobile +33 6 12 34 56 78.", "+33 6 12 34 56 78"),
        ("Call +34 612 345 678", "+34 612 345 678"),
        ("Call +31 20 123 4567", "+31 20 123 4567"),
        ("Call +39 06 1234 5678", "+39 06 1234 5678"),
        ("Call +91 98765 43210", "+91 98765 43210"),
        ("Call +55 11 91234 5678", "+55 11 91234 5678"),
        ("Call +61 2 9876 5432", "+61 2 9876 5432"),
        ("Call +442071234567", "+442071234567"),
        ("Tel. +49 (0)30 12345678", "+49 (0)30 12345678"),
        ("Tel: +44 7911 123456", "+44 7911 123456"),
    ] {
        assert_eq!(one(text, PiiKind::Phone), Some(want), "{text}");
    }
}

#[test]
fn phone_lookalikes() {
    for text in [
        "Order 1234567890 shipped on 2024-01-02.",
        "order #7185745483",
        "order #1234567890",
        "Invoice total $7185745483.00",
        "Invoice total 7,185,745,483",
        "Shipped on 2024-01-02 at 10:30.",
        "Ticket 1234-5678 escalated to tier 2.",
        "Meeting moved to 12:45 in room 578.",
        "Invoice total $12,345.67 due in 30 days.",
        "+44 12 34",
        "Version 718.574.5483 deployed.",
        "id 7185745483 in the batch",
    ] {
        none_of(text, PiiKind::Phone);
    }
    // Well-formed numbers outside the strict numbering rules are phones by shape (issue #19).
    for text in ["exchange 718-174-5483", "+34 512 345 678"] {
        assert!(
            found(text).iter().any(|(k, _)| *k == PiiKind::Phone),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------- SSN

#[test]
fn ssn_valid() {
    for (text, want) in [
        ("SSN on file: 123-45-6789.", "123-45-6789"),
        ("Provided 806-74-2196 as identifier.", "806-74-2196"),
        ("The form listed 123 45 6789 in box 3.", "123 45 6789"),
        (
            "Social security number 123456789 was verified.",
            "123456789",
        ),
        ("Provided 683517898 as identifier.", "683517898"),
        ("Tax id 018304986 confirmed with the client.", "018304986"),
    ] {
        assert_eq!(one(text, PiiKind::Ssn), Some(want), "{text}");
    }
}

#[test]
fn ssn_invalid_and_lookalikes() {
    for text in [
        "SSN 666-12-3456",
        "SSN 000-12-3456",
        "SSN 912-12-3456",
        "SSN 123-00-4567",
        "SSN 123-45-0000",
        "SSN 123-45.6789",
        "Reference number 354828356 assigned.",
        "Order 123456789 shipped.",
        "The batch held 123456789 items.",
    ] {
        none_of(text, PiiKind::Ssn);
    }
}

// ---------------------------------------------------------------- cards

#[test]
fn card_valid() {
    for (text, want) in [
        ("Paid with card 4111 1111 1111 1111.", "4111 1111 1111 1111"),
        (
            "Card number 4111-1111-1111-1111 was declined.",
            "4111-1111-1111-1111",
        ),
        (
            "Charged 5555555555554444 for the renewal.",
            "5555555555554444",
        ),
        ("Refund issued to 3782 822463 10005.", "3782 822463 10005"),
        (
            "Customer read out 6011111111111117 over the phone.",
            "6011111111111117",
        ),
        ("JCB 3530111333300000", "3530111333300000"),
        ("Diners 3056 9309 0259 04", "3056 9309 0259 04"),
        ("MC 2221 0000 0000 0009", "2221 0000 0000 0009"),
    ] {
        assert_eq!(one(text, PiiKind::Card), Some(want), "{text}");
    }
}

#[test]
fn card_invalid_and_lookalikes() {
    for text in [
        "Paid with card 4111 1111 1111 1112.",
        "Card 4111-1111 1111-1111",
        "Card 1234567812345670",
        "Card 41111 11111 11111 1",
        "Tracking 9400100000000000000000",
    ] {
        none_of(text, PiiKind::Card);
    }
}

// ---------------------------------------------------------------- IBAN

#[test]
fn iban_valid() {
    for (text, want) in [
        (
            "Wire transfer to IBAN DE89 3704 0044 0532 0130 00.",
            "DE89 3704 0044 0532 0130 00",
        ),
        ("IBAN: GB82WEST12345698765432", "GB82WEST12345698765432"),
        (
            "Account NL14 WBRY 2144 0974 99 was credited.",
            "NL14 WBRY 2144 0974 99",
        ),
        (
            "Please update bank details to IT85 T680 9098 172B C7RD 0SMA 2SL.",
            "IT85 T680 9098 172B C7RD 0SMA 2SL",
        ),
        (
            "Refund via FR7605323526915956419069706 requested.",
            "FR7605323526915956419069706",
        ),
        ("ES3687177578081997905374", "ES3687177578081997905374"),
    ] {
        assert_eq!(one(text, PiiKind::Iban), Some(want), "{text}");
    }
}

#[test]
fn iban_invalid_and_lookalikes() {
    for text in [
        "IBAN DE88 3704 0044 0532 0130 00",
        "IBAN GB82WEST12345698765433",
        "IBAN DE89 3704 0044 0532 0130",
        "IBAN DE89370400440532013000X",
        "ZZ89370400440532013000",
        "DE89 3704 0044 0532 0130 0012",
    ] {
        none_of(text, PiiKind::Iban);
    }
}

// ---------------------------------------------------------------- IP

#[test]
fn ip_valid() {
    for (text, want) in [
        ("Login from 63.219.28.210 was flagged.", "63.219.28.210"),
        ("Request came from IP 10.0.0.1.", "10.0.0.1"),
        ("Session origin 2001:db8::1fd7:e3df", "2001:db8::1fd7:e3df"),
        (
            "Blocked 2001:f68a:0:0:abb:3e13:7173:1 after failures.",
            "2001:f68a:0:0:abb:3e13:7173:1",
        ),
        ("peer fe80::1 joined", "fe80::1"),
        ("loopback ::1 only", "::1"),
        ("Server 192.168.1.20:8080 is up", "192.168.1.20"),
        ("mapped ::ffff:192.0.2.128 seen", "::ffff:192.0.2.128"),
        ("Upper FE80::ABCD:1 seen", "FE80::ABCD:1"),
    ] {
        assert_eq!(one(text, PiiKind::Ip), Some(want), "{text}");
    }
}

#[test]
fn ip_lookalikes() {
    for text in [
        "Host 999.1.1.1 is bogus",
        "Version 1.2.3.4 deployed to 12 hosts.",
        "upgraded to v 1.2.3.4 today",
        "build v1.2.3.4",
        "section 1.2.3.4.5 of the spec",
        "Version 3.12.40 deployed to 45 hosts.",
        "at 12:45:30 sharp",
        "mac 00:1A:2B:3C:4D:5E",
        "octal 01.02.03.04",
    ] {
        none_of(text, PiiKind::Ip);
    }
}

// ---------------------------------------------------------------- dates of birth

#[test]
fn dob_with_context() {
    for (text, want) in [
        ("She was born 1984-03-12 in Ohio.", "1984-03-12"),
        ("DOB: 03/12/1984", "03/12/1984"),
        ("date of birth 12.03.1984", "12.03.1984"),
        ("born on March 12, 1984", "March 12, 1984"),
        ("birthday 12 March 1984", "12 March 1984"),
    ] {
        assert_eq!(one(text, PiiKind::DateOfBirth), Some(want), "{text}");
    }
}

#[test]
fn dates_without_context_are_not_dob() {
    for text in [
        "Order 1234567 shipped on 2024-01-02.",
        "a date 2024-01-02 not a phone",
        "born 2023-02-30",
        "dob 13/13/1984",
    ] {
        none_of(text, PiiKind::DateOfBirth);
        none_of(text, PiiKind::Phone);
    }
}

// ---------------------------------------------------------------- names

#[test]
fn person_names() {
    for (text, want) in [
        (
            "Spoke with Morgan Bennett about the renewal.",
            "Morgan Bennett",
        ),
        ("Letter for Mr. Smith arrived.", "Mr. Smith"),
        ("Dr Jane Doe signed.", "Dr Jane Doe"),
        ("Patient name: Stephanie Torres", "Stephanie Torres"),
        ("Mary J. Johnson called", "Mary J. Johnson"),
        ("Signed by Patrick O'Brien today", "Patrick O'Brien"),
        ("Sincerely, Maria Garcia-Lopez", "Maria Garcia-Lopez"),
        ("Dear Mr. Okonkwo,", "Mr. Okonkwo"),
        ("cc Lisa McDonald", "Lisa McDonald"),
    ] {
        assert_eq!(one(text, PiiKind::Person), Some(want), "{text}");
    }
}

/// Names of other locales, with their titles, in the learned tagger's hands.
#[test]
fn person_names_many_locales() {
    for (text, want) in [
        (
            "Rückruf bitte an Frau Annegret Schmitz-Hübner.",
            "Frau Annegret Schmitz-Hübner",
        ),
        (
            "Contact: Mme Élodie Lefèvre, service client",
            "Mme Élodie Lefèvre",
        ),
        (
            "Pedido de Sra. María José Fernández Ruiz",
            "Sra. María José Fernández Ruiz",
        ),
        (
            "Approved by Łukasz Wiśniewski on Monday.",
            "Łukasz Wiśniewski",
        ),
        (
            "The ticket was signed by Jan van der Berg.",
            "Jan van der Berg",
        ),
        ("Dear Dott. Giulia Esposito,", "Dott. Giulia Esposito"),
        (
            "Customer Priya Venkataraman called twice.",
            "Priya Venkataraman",
        ),
    ] {
        assert_eq!(one(text, PiiKind::Person), Some(want), "{text}");
    }
}

/// Capitalised words that are not names: headings, organisations, days.
#[test]
fn capitalised_non_names() {
    for text in [
        "The Board Meeting On Monday Was Moved.",
        "Please See The Attached Quarterly Report.",
        "The Republican Party and the Democratic Party met in Congress.",
        "Annual General Assembly - Finance Committee Update",
        "Version 4.2.1 deployed to 12 hosts. Ticket 1234-5678 escalated to tier 2.",
        "Main Street Bakery sells bread on Sundays.",
    ] {
        none_of(text, PiiKind::Person);
        none_of(text, PiiKind::Address);
    }
}

#[test]
fn person_lookalikes() {
    for text in [
        "Bill the customer monthly.",
        "Summer sales start in June.",
        "Feeling decision policy at in American term why will.",
        "The Green Park is closed.",
        "Mrs. Refund issued to the client.",
    ] {
        none_of(text, PiiKind::Person);
    }
}

// ---------------------------------------------------------------- addresses

#[test]
fn addresses() {
    for (text, want) in [
        (
            "Ship to 228 Ramirez Fords Suite 249, Wongton, PA 88725 today",
            "228 Ramirez Fords Suite 249, Wongton, PA 88725",
        ),
        (
            "lives at 6860 Brooks Cliff, Carpentershire, WI 92442.",
            "6860 Brooks Cliff, Carpentershire, WI 92442",
        ),
        (
            "Office: 1600 Pennsylvania Avenue NW, Washington, DC 20500",
            "1600 Pennsylvania Avenue NW, Washington, DC 20500",
        ),
        ("Send it to 12 Oak St Apt. 4 please", "12 Oak St Apt. 4"),
        (
            "meet at 350 5th Ave, New York, NY 10118-0110",
            "350 5th Ave, New York, NY 10118-0110",
        ),
        (
            "Mail to PSC 1234, Box 5678, APO AA 12345",
            "PSC 1234, Box 5678, APO AA 12345",
        ),
    ] {
        assert_eq!(one(text, PiiKind::Address), Some(want), "{text}");
    }
}

/// UK and continental European street addresses (frames unlike the training script's).
#[test]
fn addresses_many_locales() {
    for (text, want) in [
        (
            "Neue Anschrift: Hauptstraße 12, 10115 Berlin.",
            "Hauptstraße 12, 10115 Berlin",
        ),
        (
            "Le colis part au 12 rue de la Paix, 75002 Paris.",
            "12 rue de la Paix, 75002 Paris",
        ),
        (
            "Vivo en Calle Mayor 5, 28013 Madrid.",
            "Calle Mayor 5, 28013 Madrid",
        ),
        (
            "Consegna: Via Roma 1, 00184 Roma, entro lunedì.",
            "Via Roma 1, 00184 Roma",
        ),
        (
            "Wij wonen op Kerkstraat 12, 1012 AB Amsterdam.",
            "Kerkstraat 12, 1012 AB Amsterdam",
        ),
        (
            "Send it to 10 Downing Street, London SW1A 2AA please.",
            "10 Downing Street, London SW1A 2AA",
        ),
    ] {
        assert_eq!(one(text, PiiKind::Address), Some(want), "{text}");
    }
}

#[test]
fn address_lookalikes() {
    for text in [
        "We sold 12 Street lamps.",
        "In 2020 Sales grew.",
        "Room 578 Park",
    ] {
        none_of(text, PiiKind::Address);
    }
}

// ---------------------------------------------------------------- output shape

#[test]
fn findings_are_sorted_and_disjoint() {
    let text = "Morgan Bennett (morgan.bennett@example.org, 718-574-5483) paid with 4111 1111 1111 1111 \
                from 10.0.0.1; IBAN DE89 3704 0044 0532 0130 00; SSN 123-45-6789.";
    let f = det().detect(text);
    let kinds: Vec<PiiKind> = f.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            PiiKind::Person,
            PiiKind::Email,
            PiiKind::Phone,
            PiiKind::Card,
            PiiKind::Ip,
            PiiKind::Iban,
            PiiKind::Ssn
        ]
    );
    for w in f.windows(2) {
        assert!(w[0].end <= w[1].start);
    }
    assert!(f.iter().all(|f| f.score >= 0.5 && f.score <= 1.0));
}

#[test]
fn detect_into_reuses_and_clears() {
    let mut out = Vec::new();
    det().detect_into("SSN 123-45-6789", &mut out);
    assert_eq!(out.len(), 1);
    det().detect_into("nothing to see here", &mut out);
    assert!(out.is_empty());
}

#[test]
fn context_raises_score() {
    let plain = det().detect("Provided 123-45-6789 today")[0].score;
    let ctx = det().detect("SSN 123-45-6789 today")[0].score;
    assert!(ctx > plain, "{ctx} > {plain}");
}

#[test]
fn enabled_kinds_and_threshold() {
    let d = Detector::new(DetectorConfig::only(&[PiiKind::Email])).unwrap();
    let f = d.detect("a@example.org 123-45-6789");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, PiiKind::Email);

    let strict = Detector::new(DetectorConfig {
        min_score: 0.9,
        ..DetectorConfig::default()
    })
    .unwrap();
    assert!(strict.detect("Provided 123-45-6789 today").is_empty());
    assert_eq!(strict.detect("SSN 123-45-6789").len(), 1);

    let err = Detector::new(DetectorConfig {
        min_score: 1.5,
        ..DetectorConfig::default()
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "min_score: score must be a number between 0 and 1"
    );
}

#[test]
fn shared_across_threads() {
    let d = Arc::new(Detector::new(DetectorConfig::default()).unwrap());
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let d = Arc::clone(&d);
            std::thread::spawn(move || d.detect("SSN 123-45-6789").len())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 1);
    }
}

#[test]
fn unicode_text_offsets_are_char_boundaries() {
    let text = "Grüße an José: jose@example.es, Tel. +49 30 12345678 — danke!";
    for f in det().detect(text) {
        assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
    }
    assert_eq!(one(text, PiiKind::Email), Some("jose@example.es"));
    assert_eq!(one(text, PiiKind::Phone), Some("+49 30 12345678"));
}

// ---------------------------------------------------------------- whole values

#[test]
fn classify_values() {
    let cases = [
        ("morgan_bennett2001@orozco-hansen.info", PiiKind::Email),
        ("718-574-5483", PiiKind::Phone),
        ("018-30-4986", PiiKind::Ssn),
        ("018304986", PiiKind::Ssn),
        ("341665491210355", PiiKind::Card),
        ("DE50344663795630945463", PiiKind::Iban),
        ("63.219.28.210", PiiKind::Ip),
        ("2001:b5fc:a316::e60d:614c", PiiKind::Ip),
        ("1999-09-25", PiiKind::DateOfBirth),
        ("Morgan Bennett", PiiKind::Person),
        ("MORGAN BENNETT", PiiKind::Person),
        ("Morgan", PiiKind::Person),
        (
            "228 Ramirez Fords Suite 249, Wongton, PA 88725",
            PiiKind::Address,
        ),
        ("USNS Smith, FPO AE 12345", PiiKind::Address),
        ("  +1 205 452 1736 ", PiiKind::Phone),
    ];
    for (value, want) in cases {
        assert_eq!(
            det().classify_value(value).map(|c| c.0),
            Some(want),
            "{value}"
        );
    }
    for value in [
        "",
        "   ",
        "37336",
        "hello world",
        "4111 1111 1111 1112",
        "SSN 123-45-6789",
        "666-12-3456",
    ] {
        assert_eq!(det().classify_value(value), None, "{value}");
    }
}

// ---------------------------------------------------------------- custom detectors

fn employee_id() -> CustomDetector {
    CustomDetector {
        name: "employee_id".into(),
        pattern: r"\bE-\d{6}\b".into(),
        checksum: None,
        context: vec!["employee".into()],
        score: 0.6,
    }
}

#[test]
fn custom_detector_with_context() {
    let d = Detector::new(DetectorConfig {
        custom: vec![employee_id()],
        ..DetectorConfig::default()
    })
    .unwrap();
    let f = d.detect("Employee E-123456 badge; visitor E-654321 and a@example.org");
    assert_eq!(f.len(), 3);
    assert_eq!(f[0].kind, PiiKind::Custom(0));
    assert_eq!(d.kind_name(f[0].kind), "employee_id");
    assert!((f[0].score - 0.8).abs() < 1e-6, "context raises the score");
    assert!((f[1].score - 0.6).abs() < 1e-6);
    assert_eq!(f[2].kind, PiiKind::Email);
    assert_eq!(d.kind_from_name("employee_id").unwrap(), PiiKind::Custom(0));
    assert_eq!(d.kind_from_name("email").unwrap(), PiiKind::Email);
    let err = d.kind_from_name("passport").unwrap_err().to_string();
    assert!(err.contains("employee_id"), "{err}");
    assert_eq!(
        d.classify_value(" E-123456 ").map(|c| c.0),
        Some(PiiKind::Custom(0))
    );
}

#[test]
fn custom_detector_checksums() {
    let d = Detector::new(DetectorConfig {
        enabled: vec![],
        custom: vec![
            CustomDetector {
                name: "loyalty".into(),
                pattern: r"\bL\d{10}\b".into(),
                checksum: Some(Checksum::Luhn),
                context: vec![],
                score: 0.7,
            },
            CustomDetector {
                name: "acct".into(),
                pattern: r"\b[A-Z]{2}\d{2}[A-Z0-9]{10,30}\b".into(),
                checksum: Some(Checksum::Mod97),
                context: vec![],
                score: 0.9,
            },
        ],
        ..DetectorConfig::default()
    })
    .unwrap();
    // 0000000018 passes Luhn, 0000000019 does not.
    let f = d.detect("L0000000018 L0000000019 GB82WEST12345698765432 GB82WEST12345698765433");
    let got: Vec<_> = f.iter().map(|f| (d.kind_name(f.kind), f.start)).collect();
    assert_eq!(got, [("loyalty", 0), ("acct", 24)]);
}

#[test]
fn custom_detector_errors() {
    let mk = |c: CustomDetector| {
        Detector::new(DetectorConfig {
            custom: vec![c],
            ..DetectorConfig::default()
        })
        .unwrap_err()
    };
    let e = mk(CustomDetector {
        name: "x".into(),
        pattern: "(unclosed".into(),
        ..employee_id()
    });
    assert!(matches!(e, DetectError::InvalidPattern { .. }));
    assert!(
        e.to_string()
            .starts_with("custom detector \"x\": invalid pattern: "),
        "{e}"
    );
    let e = mk(CustomDetector {
        name: "email".into(),
        ..employee_id()
    });
    assert!(e.to_string().contains("taken by a built-in kind"), "{e}");
    let e = mk(CustomDetector {
        name: "Bad Name".into(),
        ..employee_id()
    });
    assert!(matches!(e, DetectError::InvalidCustomName { .. }));
    let e = mk(CustomDetector {
        score: f32::NAN,
        ..employee_id()
    });
    assert_eq!(
        e.to_string(),
        "custom.employee_id.score: score must be a number between 0 and 1"
    );
    let e = mk(CustomDetector {
        context: vec![" ".into()],
        ..employee_id()
    });
    assert!(matches!(e, DetectError::EmptyContextWord { .. }));
    let dup = Detector::new(DetectorConfig {
        custom: vec![employee_id(), employee_id()],
        ..DetectorConfig::default()
    })
    .unwrap_err();
    assert!(dup.to_string().contains("used by another custom detector"));
}

#[test]
fn config_deserializes_strictly() {
    let json = r#"{"enabled": ["email", "ssn"], "min_score": 0.6,
        "custom": [{"name": "badge", "pattern": "B\\d{4}", "checksum": "luhn", "score": 0.7}]}"#;
    let cfg: DetectorConfig = serde_json::from_str(json).unwrap();
    assert_eq!(cfg.enabled, [PiiKind::Email, PiiKind::Ssn]);
    assert_eq!(cfg.custom[0].checksum, Some(Checksum::Luhn));
    assert!(serde_json::from_str::<DetectorConfig>(r#"{"min_scor": 0.6}"#).is_err());
    assert!(serde_json::from_str::<DetectorConfig>(r#"{"enabled": ["passport"]}"#).is_err());
    let bad = r#"{"custom": [{"name": "b", "pattern": "x", "score": 0.5, "extra": 1}]}"#;
    assert!(serde_json::from_str::<DetectorConfig>(bad).is_err());
    let bad = r#"{"custom": [{"name": "b", "pattern": "x", "score": 0.5, "checksum": "crc"}]}"#;
    assert!(serde_json::from_str::<DetectorConfig>(bad).is_err());
}

#[test]
fn error_messages_hold_no_scanned_text() {
    // Errors come only from configuration; detect() never fails. Kind parsing names the
    // configured word, not data.
    let e = "pasport".parse::<PiiKind>().unwrap_err().to_string();
    assert!(e.starts_with("unknown pii kind \"pasport\"; valid names: email, phone"));
}
