//! Column classification over the synthetic table's structured columns.

use custos_detect::{
    Detector, DetectorConfig, PiiKind, Recommendation, classify_column, name_hint,
};

const SAMPLE: &str = r#"id,full_name,email,phone,ssn,credit_card,iban,ip_address,date_of_birth,address,salary,notes
1,"Morgan Bennett","morgan_bennett2001@orozco-hansen.info","718-574-5483","018-30-4986","341665491210355","DE50344663795630945463","63.219.28.210",1999-09-25,"228 Ramirez Fords Suite 249, Wongton, PA 88725",37336,"Per improve whom capital participant. Customer read out 4163 4538 0580 3356 over the phone. Account NL14 WBRY 2144 0974 99 was credited. Meeting moved to 12:45 in room 578."
2,"Stephanie Torres","stephanie.torres@wilkerson.com","409-427-8078","630-89-6746","4391908075165616","FR7605323526915956419069706","142.152.125.107",2003-03-08,"6860 Brooks Cliff, Carpentershire, WI 92442",71868,"Cover TV doctor receive. Reached the client on +1-205-452-1736. Provided 806-74-2196 as identifier. Reference number 354828356 assigned."
3,"Patrick Nixon","patrick2708@sanchez-cooper.net","667-207-2439","293-14-9164","377355453269527","FR7607561366444278779558977","52.36.1.44",1940-09-07,"333 White Pass Apt. 885, New Daniel, NJ 22695",137699,"South air similar various relate candidate bad consider. Learn edge hospital fly project room indicate challenge."
4,"Debra George","debra.george@rogers.com","334-231-7418","050-10-5778","4853975921741677","ES3687177578081997905374","2001:b5fc:a316::e60d:614c",1974-08-16,"0769 Martinez Mountains Apt. 089, West Logan, MS 85756",212241,"Login from 2001:f68a::abb:3e13:7173 was flagged. Provided 683517898 as identifier. Him stock especially have morning herself message sort. Phone: +1-814-744-2034"
5,"Melinda Hudson","melinda.hudson@gordon-alexander.com","718-463-9617","539-25-6788","4165285281542373","ES2318078375402346320268","2001:db8::1fd7:e3df",1974-10-22,"PSC 6352, Box 6125, APO AA 54105",172709,"Sea list trial voice wear represent behind manager cultural. Have eight sort however technology."
"#;

fn columns() -> (Vec<String>, Vec<Vec<String>>) {
    let mut rdr = csv::Reader::from_reader(SAMPLE.as_bytes());
    let headers: Vec<String> = rdr.headers().unwrap().iter().map(str::to_owned).collect();
    let mut cols = vec![Vec::new(); headers.len()];
    for rec in rdr.records() {
        for (i, v) in rec.unwrap().iter().enumerate() {
            cols[i].push(v.to_owned());
        }
    }
    (headers, cols)
}

#[test]
fn synthetic_table_columns() {
    let det = Detector::new(DetectorConfig::default()).unwrap();
    let (headers, cols) = columns();
    let mut got = Vec::new();
    for (name, values) in headers.iter().zip(&cols) {
        let p = classify_column(&det, name, values.iter().map(|v| Some(v.as_str())));
        got.push((name.as_str(), p.recommended.to_toml_action()));
        if let Some(top) = p.classes.first() {
            assert!(top.match_ratio > 0.99, "{name}: {p:?}");
            assert_eq!(Some(top.kind), p.name_hint, "{name}");
        }
    }
    let want = [
        ("id", r#"{ action = "keep" }"#),
        (
            "full_name",
            r#"{ action = "encrypt_deterministic", key = "joins" }"#,
        ),
        ("email", r#"{ action = "encrypt", key = "pii-main" }"#),
        ("phone", r#"{ action = "mask", keep_last = 4 }"#),
        (
            "ssn",
            r#"{ action = "fpe", format = "ssn", key = "fpe-main" }"#,
        ),
        ("credit_card", r#"{ action = "tokenize", key = "tokens" }"#),
        ("iban", r#"{ action = "tokenize", key = "tokens" }"#),
        ("ip_address", r#"{ action = "tokenize", key = "tokens" }"#),
        ("date_of_birth", r#"{ action = "generalize", to = "year" }"#),
        ("address", r#"{ action = "redact" }"#),
        ("salary", r#"{ action = "keep" }"#),
        (
            "notes",
            r#"{ action = "redact", types = ["phone", "ssn", "card", "iban", "ip"] }"#,
        ),
    ];
    let got: Vec<(&str, &str)> = got.iter().map(|(n, a)| (*n, a.as_str())).collect();
    assert_eq!(got, want);
}

#[test]
fn free_text_profile() {
    let det = Detector::new(DetectorConfig::default()).unwrap();
    let (_, cols) = columns();
    let p = classify_column(&det, "notes", cols[11].iter().map(|v| Some(v.as_str())));
    assert!(p.free_text);
    assert!(p.classes.is_empty());
    assert_eq!(p.values, 5);
    let ssn = p.embedded.iter().find(|c| c.kind == PiiKind::Ssn).unwrap();
    assert!((ssn.match_ratio - 0.4).abs() < 1e-9);
}

#[test]
fn nulls_and_hints() {
    let det = Detector::new(DetectorConfig::default()).unwrap();
    // All null: the name decides.
    let p = classify_column(&det, "customer_email", [None, None]);
    assert_eq!(p.name_hint, Some(PiiKind::Email));
    assert_eq!(p.values, 0);
    assert_eq!(p.recommended, Recommendation::for_kind(PiiKind::Email));
    // Values decide over an unhelpful name; nulls do not dilute the ratio.
    let p = classify_column(
        &det,
        "c7",
        [Some("123-45-6789"), None, Some(" 234-56-7890 "), Some("")],
    );
    assert_eq!(p.classes[0].kind, PiiKind::Ssn);
    assert_eq!(p.classes[0].match_ratio, 1.0);
    assert_eq!(p.name_hint, None);
    // Nothing personal.
    let p = classify_column(&det, "status", [Some("open"), Some("closed")]);
    assert_eq!(p.recommended, Recommendation::Keep);
    assert!(p.classes.is_empty() && !p.free_text);
    assert_eq!(name_hint("first_name"), Some(PiiKind::Person));
}

#[test]
fn recommendation_serde_shape() {
    let r = Recommendation::for_kind(PiiKind::Ssn);
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(json, r#"{"action":"fpe","format":"ssn","key":"fpe-main"}"#);
    let back: Recommendation = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    let redact: Recommendation = serde_json::from_str(r#"{"action":"redact"}"#).unwrap();
    assert_eq!(redact, Recommendation::Redact { types: vec![] });
    assert!(
        serde_json::from_str::<Recommendation>(r#"{"action":"mask","keep_last":4,"x":1}"#).is_err()
    );
}

#[test]
fn weak_values_need_the_column_name() {
    let det = Detector::new(DetectorConfig::default()).unwrap();
    let bare = [Some("7185745483"), Some("2054521736"), Some("8147442034")];
    let ids = classify_column(&det, "order_id", bare);
    assert!(ids.classes.is_empty(), "{ids:?}");
    assert_eq!(ids.recommended, Recommendation::Keep);
    let phones = classify_column(&det, "mobile", bare);
    assert_eq!(phones.classes[0].kind, PiiKind::Phone);
    assert_eq!(phones.recommended, Recommendation::for_kind(PiiKind::Phone));

    let dates = [Some("1999-09-25"), Some("2003-03-08")];
    let created = classify_column(&det, "created_at", dates);
    assert_eq!(created.classes[0].kind, PiiKind::DateOfBirth);
    assert_eq!(created.recommended, Recommendation::Keep);
    let dob = classify_column(&det, "birth_date", dates);
    assert_eq!(
        dob.recommended.to_toml_action(),
        r#"{ action = "generalize", to = "year" }"#
    );
}

#[test]
fn unlisted_names_count_in_name_columns() {
    let det = Detector::new(DetectorConfig::default()).unwrap();
    let values = [
        Some("Chidi Okonkwo"),
        Some("Aiyana Tsosie"),
        Some("Morgan Bennett"),
    ];
    let p = classify_column(&det, "full_name", values);
    assert_eq!(p.classes[0].kind, PiiKind::Person);
    assert_eq!(p.classes[0].match_ratio, 1.0);
    let p = classify_column(
        &det,
        "project",
        [Some("Apollo Gateway"), Some("Blue Harbor")],
    );
    assert!(p.classes.is_empty(), "{p:?}");
}
