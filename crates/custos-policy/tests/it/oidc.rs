//! OIDC bearer tokens: the accept path, every refusal, the classic JWT attacks, and that no
//! message ever carries a token.
//!
//! The keys in `fixtures/` are test-only, generated with openssl for these tests (RSA 2048 in
//! PKCS#1, EC P-256 and Ed25519 in PKCS#8); `jwks.json` holds their public halves plus an
//! HMAC (`oct`) key and an encryption (`use: enc`) key that must never verify anything.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use custos_policy::oidc::{OidcConfig, OidcError, OidcIdentity, OidcVerifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://idp.example.com/realms/custos";
const AUD: &str = "custos";

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// The DER body of a PEM file.
fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

fn signing_key(alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::RS256 | Algorithm::PS256 => {
            EncodingKey::from_rsa_der(&der(&fixture("rsa_private.pem")))
        }
        Algorithm::ES256 => EncodingKey::from_ec_der(&der(&fixture("ec_private.pem"))),
        Algorithm::EdDSA => EncodingKey::from_ed_der(&der(&fixture("ed_private.pem"))),
        other => panic!("no test key for {other:?}"),
    }
}

fn sign_with(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    encode(&header, claims, key).unwrap()
}

fn sign(alg: Algorithm, kid: &str, claims: &Value) -> String {
    sign_with(alg, Some(kid), claims, &signing_key(alg))
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn config_with(extra: Value) -> OidcConfig {
    let mut cfg = json!({
        "issuer": ISS,
        "audience": AUD,
        "algorithms": ["RS256", "ES256", "EdDSA"],
        "roles": [
            {"claim_value": "custos-admins", "role": "security_admin"},
            {"claim_value": "engineers", "role": "data_engineer"},
        ],
    });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    serde_json::from_value(cfg).unwrap()
}

fn verifier_with(extra: Value) -> OidcVerifier {
    OidcVerifier::new(config_with(extra), &fixture("jwks.json")).unwrap()
}

fn verifier() -> OidcVerifier {
    verifier_with(json!({}))
}

/// A verifier whose key set holds only the RSA key, so tokens need no `kid`.
fn single_key_verifier() -> OidcVerifier {
    let jwks: Value = serde_json::from_str(&fixture("jwks.json")).unwrap();
    let single = json!({"keys": [jwks["keys"][0].clone()]});
    let v = OidcVerifier::new(config_with(json!({})), &single.to_string()).unwrap();
    assert_eq!(v.key_count(), 1);
    v
}

fn claims() -> Value {
    json!({
        "iss": ISS,
        "aud": AUD,
        "sub": "u-123",
        "exp": NOW + 300,
        "iat": NOW - 10,
        "auth_time": NOW - 20,
        "roles": ["engineers"],
        "amr": ["pwd", "otp"],
    })
}

fn with(mut c: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn rs256(c: &Value) -> String {
    sign(Algorithm::RS256, "rsa-1", c)
}

#[test]
fn valid_tokens_of_each_key_type_are_accepted() {
    // The server shares one verifier between request handlers.
    fn shareable<T: Send + Sync>() {}
    shareable::<OidcVerifier>();
    let v = verifier();
    let expected = OidcIdentity {
        username: "u-123".into(),
        role: "data_engineer".into(),
        issuer: ISS.into(),
        subject: "u-123".into(),
        mfa: true,
        auth_time: Some(NOW - 20),
        expires_s: NOW + 300,
    };
    for (alg, kid) in [
        (Algorithm::RS256, "rsa-1"),
        (Algorithm::ES256, "ec-1"),
        (Algorithm::EdDSA, "ed-1"),
    ] {
        assert_eq!(
            v.verify(&sign(alg, kid, &claims()), NOW).unwrap(),
            expected,
            "{alg:?}"
        );
    }
    // Only the configured mfa_amr values count as multi-factor.
    let id = v
        .verify(&rs256(&with(claims(), json!({"amr": ["pwd"]}))), NOW)
        .unwrap();
    assert!(!id.mfa);
    let id = v
        .verify(
            &rs256(&with(claims(), json!({"amr": null, "auth_time": null}))),
            NOW,
        )
        .unwrap();
    assert!(!id.mfa);
    assert_eq!(id.auth_time, None);
    let v = verifier_with(json!({"mfa_amr": ["hwk"]}));
    assert!(!v.verify(&rs256(&claims()), NOW).unwrap().mfa);
}

#[test]
fn expiry_and_not_before_respect_the_leeway_on_both_sides() {
    let v = verifier(); // leeway 30
    let at = |c: Value| v.verify(&rs256(&with(claims(), c)), NOW);
    assert!(at(json!({"exp": NOW - 29})).is_ok());
    assert!(matches!(
        at(json!({"exp": NOW - 30})),
        Err(OidcError::Expired)
    ));
    assert!(matches!(
        at(json!({"exp": NOW - 3600})),
        Err(OidcError::Expired)
    ));
    assert!(at(json!({"nbf": NOW + 30})).is_ok());
    assert!(matches!(
        at(json!({"nbf": NOW + 31})),
        Err(OidcError::NotYetValid)
    ));
    // A token issued in the future is not valid yet either.
    assert!(matches!(
        at(json!({"iat": NOW + 31})),
        Err(OidcError::NotYetValid)
    ));

    let strict = verifier_with(json!({"leeway_secs": 0}));
    let at = |c: Value| strict.verify(&rs256(&with(claims(), c)), NOW);
    assert!(matches!(at(json!({"exp": NOW})), Err(OidcError::Expired)));
    assert!(at(json!({"exp": NOW + 1})).is_ok());
    assert!(at(json!({"nbf": NOW})).is_ok());
    assert!(matches!(
        at(json!({"nbf": NOW + 1})),
        Err(OidcError::NotYetValid)
    ));
    // Fractional and absurd NumericDates neither overflow nor pass.
    assert!(at(json!({"exp": NOW as f64 + 0.5})).is_err());
    assert!(at(json!({"exp": 1e300})).is_ok());
    assert!(matches!(
        at(json!({"exp": -9_223_372_036_854_775_808_i64})),
        Err(OidcError::Expired)
    ));
    assert!(matches!(
        at(json!({"exp": "tomorrow"})),
        Err(OidcError::InvalidClaim { .. })
    ));
}

#[test]
fn issuer_audience_and_expiry_are_required() {
    let v = verifier();
    let at = |c: Value| v.verify(&rs256(&with(claims(), c)), NOW);
    assert!(matches!(
        at(json!({"iss": "https://evil.example.com"})),
        Err(OidcError::WrongIssuer)
    ));
    assert!(matches!(
        at(json!({"iss": format!("{ISS}/")})),
        Err(OidcError::WrongIssuer)
    ));
    assert!(matches!(at(json!({"iss": 7})), Err(OidcError::WrongIssuer)));
    assert!(matches!(at(json!({"iss": null})), Err(OidcError::MissingClaim(c)) if c == "iss"));
    assert!(matches!(
        at(json!({"aud": "another-app"})),
        Err(OidcError::WrongAudience)
    ));
    assert!(matches!(
        at(json!({"aud": ["another-app", "account"]})),
        Err(OidcError::WrongAudience)
    ));
    assert!(at(json!({"aud": ["account", AUD]})).is_ok());
    assert!(matches!(at(json!({"aud": null})), Err(OidcError::MissingClaim(c)) if c == "aud"));
    assert!(matches!(at(json!({"exp": null})), Err(OidcError::MissingClaim(c)) if c == "exp"));
    assert!(matches!(at(json!({"sub": null})), Err(OidcError::MissingClaim(c)) if c == "sub"));

    // Any configured audience will do.
    let v = verifier_with(json!({"audience": ["custos-cli", "custos"]}));
    assert!(v.verify(&rs256(&claims()), NOW).is_ok());
}

#[test]
fn unsigned_tokens_are_refused() {
    let v = verifier();
    let payload = b64(&claims());
    for alg in ["none", "None", "NONE"] {
        for kid in [json!("rsa-1"), Value::Null] {
            let mut header = json!({"alg": alg, "typ": "JWT"});
            if !kid.is_null() {
                header["kid"] = kid.clone();
            }
            let token = format!("{}.{payload}.", b64(&header));
            assert!(
                matches!(v.verify(&token, NOW), Err(OidcError::AlgorithmNotAllowed(a)) if a == alg),
                "{alg} {kid}"
            );
        }
    }
    // Nor does a real signature rescue a header rewritten to `none`.
    let good = rs256(&claims());
    let sig = good.rsplit('.').next().unwrap();
    let token = format!("{}.{payload}.{sig}", b64(&json!({"alg": "none"})));
    assert!(matches!(
        v.verify(&token, NOW),
        Err(OidcError::AlgorithmNotAllowed(_))
    ));
}

#[test]
fn hmac_with_the_rsa_public_key_as_secret_is_refused() {
    // The classic key confusion: the attacker knows the public key and signs HS256 with it,
    // hoping the verifier feeds that key to HMAC.
    let public_pem = fixture("rsa_public.pem");
    let secrets = [
        public_pem.as_bytes().to_vec(),
        public_pem.trim_end().as_bytes().to_vec(),
        der(&public_pem),
    ];
    for secret in &secrets {
        let key = EncodingKey::from_secret(secret).unwrap();
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            for (v, kid) in [(verifier(), Some("rsa-1")), (single_key_verifier(), None)] {
                let token = sign_with(alg, kid, &claims(), &key);
                let e = v.verify(&token, NOW).unwrap_err();
                assert!(
                    matches!(&e, OidcError::AlgorithmNotAllowed(a) if a.starts_with("HS")),
                    "{e}"
                );
            }
        }
    }
}

#[test]
fn the_algorithm_must_fit_the_key() {
    let v = verifier();
    // RS256 header naming the EC key (signed with RSA, so only the mismatch can refuse it).
    let t = sign(Algorithm::RS256, "ec-1", &claims());
    assert!(matches!(v.verify(&t, NOW), Err(OidcError::AlgorithmNotAllowed(a)) if a == "RS256"));
    let t = sign(Algorithm::ES256, "rsa-1", &claims());
    assert!(matches!(v.verify(&t, NOW), Err(OidcError::AlgorithmNotAllowed(a)) if a == "ES256"));
    let t = sign(Algorithm::EdDSA, "ec-1", &claims());
    assert!(matches!(v.verify(&t, NOW), Err(OidcError::AlgorithmNotAllowed(a)) if a == "EdDSA"));
    // The JWK pins RS256; PS256 from the same key is refused even when configured.
    let v = verifier_with(json!({"algorithms": ["RS256", "PS256"]}));
    let t = sign(Algorithm::PS256, "rsa-1", &claims());
    assert!(matches!(v.verify(&t, NOW), Err(OidcError::AlgorithmNotAllowed(a)) if a == "PS256"));
    // Without an `alg` in the JWK, PS256 is fine for an RSA key.
    let mut jwks: Value = serde_json::from_str(&fixture("jwks.json")).unwrap();
    jwks["keys"][0].as_object_mut().unwrap().remove("alg");
    let v = OidcVerifier::new(
        config_with(json!({"algorithms": ["RS256", "PS256"]})),
        &jwks.to_string(),
    )
    .unwrap();
    assert!(v.verify(&t, NOW).is_ok());
    // Without any JWK `alg`, the key type alone decides.
    for key in jwks["keys"].as_array_mut().unwrap() {
        key.as_object_mut().unwrap().remove("alg");
    }
    let v = OidcVerifier::new(config_with(json!({})), &jwks.to_string()).unwrap();
    for (alg, kid) in [
        (Algorithm::RS256, "ec-1"),
        (Algorithm::RS256, "ed-1"),
        (Algorithm::ES256, "rsa-1"),
        (Algorithm::EdDSA, "rsa-1"),
    ] {
        let t = sign(alg, kid, &claims());
        assert!(
            matches!(v.verify(&t, NOW), Err(OidcError::AlgorithmNotAllowed(_))),
            "{alg:?} {kid}"
        );
    }
    // A configured algorithm list is enforced too: ES256 is not in this one.
    let v = verifier_with(json!({"algorithms": ["RS256"]}));
    let t = sign(Algorithm::ES256, "ec-1", &claims());
    assert!(matches!(v.verify(&t, NOW), Err(OidcError::AlgorithmNotAllowed(a)) if a == "ES256"));
}

#[test]
fn an_unknown_kid_asks_for_a_key_refresh() {
    let mut v = verifier();
    let t = sign(Algorithm::RS256, "rsa-2", &claims());
    assert!(matches!(v.verify(&t, NOW), Err(OidcError::UnknownKid(k)) if k == "rsa-2"));
    // The IdP rotated: refresh once, then the token verifies.
    let mut jwks: Value = serde_json::from_str(&fixture("jwks.json")).unwrap();
    let mut rotated = jwks["keys"][0].clone();
    rotated["kid"] = json!("rsa-2");
    jwks["keys"].as_array_mut().unwrap().push(rotated);
    v.replace_keys(&jwks.to_string()).unwrap();
    assert_eq!(v.key_count(), 4);
    assert!(v.verify(&t, NOW).is_ok());
    // A bad refresh keeps the keys in use.
    assert!(matches!(
        v.replace_keys("{\"keys\": []}"),
        Err(OidcError::Jwks(_))
    ));
    assert!(matches!(v.replace_keys("<html>"), Err(OidcError::Jwks(_))));
    assert_eq!(v.key_count(), 4);
    assert!(v.verify(&t, NOW).is_ok());
}

#[test]
fn a_kid_is_required_when_the_set_has_several_keys() {
    let t = sign_with(
        Algorithm::RS256,
        None,
        &claims(),
        &signing_key(Algorithm::RS256),
    );
    assert!(matches!(verifier().verify(&t, NOW), Err(OidcError::MissingClaim(c)) if c == "kid"));
    assert!(single_key_verifier().verify(&t, NOW).is_ok());
}

#[test]
fn tampering_breaks_the_signature() {
    let v = verifier();
    for (alg, kid) in [
        (Algorithm::RS256, "rsa-1"),
        (Algorithm::ES256, "ec-1"),
        (Algorithm::EdDSA, "ed-1"),
    ] {
        let t = sign(alg, kid, &claims());
        let parts: Vec<&str> = t.split('.').collect();
        let forged = b64(&with(claims(), json!({"roles": ["custos-admins"]})));
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert!(
            matches!(v.verify(&tampered, NOW), Err(OidcError::BadSignature)),
            "{alg:?}"
        );
        // A signature of another token (same key) does not transfer.
        let other = sign(alg, kid, &with(claims(), json!({"sub": "u-999"})));
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            other.rsplit('.').next().unwrap()
        );
        assert!(matches!(
            v.verify(&swapped, NOW),
            Err(OidcError::BadSignature)
        ));
        // An empty signature neither.
        let bare = format!("{}.{}.", parts[0], parts[1]);
        assert!(matches!(v.verify(&bare, NOW), Err(OidcError::BadSignature)));
    }
}

#[test]
fn malformed_tokens_are_refused() {
    let v = verifier();
    let good = rs256(&claims());
    let parts: Vec<&str> = good.split('.').collect();
    let crit = b64(&json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1}));
    for bad in [
        String::new(),
        "abc".into(),
        "a.b".into(),
        format!("{good}.{}", parts[2]),
        format!("{}.{}.{}", "!!", parts[1], parts[2]),
        format!("{}.{}.{}", b64(&json!("a string")), parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            b64(&json!({"kid": "rsa-1"})),
            parts[1],
            parts[2]
        ),
        format!("{}.{}.{}", b64(&json!({"alg": 256})), parts[1], parts[2]),
        format!("{crit}.{}.{}", parts[1], parts[2]),
        format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], parts[1], "x".repeat(20_000)),
    ] {
        assert!(
            matches!(v.verify(&bad, NOW), Err(OidcError::Malformed)),
            "{}",
            &bad[..bad.len().min(60)]
        );
    }
    // A signed payload that is not a JSON object.
    let key = signing_key(Algorithm::RS256);
    let header = b64(&json!({"alg": "RS256", "kid": "rsa-1"}));
    let payload = URL_SAFE_NO_PAD.encode(b"[1,2,3]");
    let msg = format!("{header}.{payload}");
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &key, Algorithm::RS256).unwrap();
    assert!(matches!(
        v.verify(&format!("{msg}.{sig}"), NOW),
        Err(OidcError::Malformed)
    ));
}

#[test]
fn roles_come_from_a_string_a_list_or_a_nested_claim() {
    let v = verifier();
    let role = |c: Value| v.verify(&rs256(&with(claims(), c)), NOW).map(|id| id.role);
    assert_eq!(
        role(json!({"roles": "engineers"})).unwrap(),
        "data_engineer"
    );
    assert_eq!(
        role(json!({"roles": ["viewers", 3, "engineers"]})).unwrap(),
        "data_engineer"
    );
    // The first mapping in config order wins, whatever the token's order.
    assert_eq!(
        role(json!({"roles": ["engineers", "custos-admins"]})).unwrap(),
        "security_admin"
    );
    assert!(matches!(
        role(json!({"roles": ["viewers"]})),
        Err(OidcError::NoRole)
    ));
    assert!(matches!(role(json!({"roles": []})), Err(OidcError::NoRole)));
    assert!(matches!(
        role(json!({"roles": null})),
        Err(OidcError::NoRole)
    ));
    assert!(matches!(
        role(json!({"roles": {"a": 1}})),
        Err(OidcError::NoRole)
    ));
    // Matching is exact.
    assert!(matches!(
        role(json!({"roles": "Engineers"})),
        Err(OidcError::NoRole)
    ));

    let keycloak = verifier_with(json!({"role_claim": "realm_access.roles"}));
    let c = with(
        claims(),
        json!({"roles": null, "realm_access": {"roles": ["offline_access", "custos-admins"]}}),
    );
    assert_eq!(
        keycloak.verify(&rs256(&c), NOW).unwrap().role,
        "security_admin"
    );
    let c = with(
        claims(),
        json!({"realm_access": {"groups": ["custos-admins"]}}),
    );
    assert!(matches!(
        keycloak.verify(&rs256(&c), NOW),
        Err(OidcError::NoRole)
    ));

    // A namespaced claim whose name holds dots is found by its full name.
    let auth0 = verifier_with(json!({"role_claim": "https://custos.example.com/roles"}));
    let c = with(
        claims(),
        json!({"https://custos.example.com/roles": ["engineers"]}),
    );
    assert_eq!(auth0.verify(&rs256(&c), NOW).unwrap().role, "data_engineer");
}

#[test]
fn the_user_name_claim_must_be_a_valid_custos_name() {
    let v = verifier_with(json!({"username_claim": "preferred_username"}));
    let at = |c: Value| v.verify(&rs256(&with(claims(), c)), NOW);
    assert_eq!(
        at(json!({"preferred_username": "ann.lee"}))
            .unwrap()
            .username,
        "ann.lee"
    );
    assert_eq!(
        at(json!({"preferred_username": "ann.lee"}))
            .unwrap()
            .subject,
        "u-123"
    );
    assert!(matches!(at(json!({})), Err(OidcError::MissingClaim(c)) if c == "preferred_username"));
    for bad in [
        json!(""),
        json!(42),
        json!(["ann"]),
        json!("ann lee"),
        json!("a".repeat(65)),
    ] {
        let e = at(json!({"preferred_username": bad})).unwrap_err();
        assert!(
            matches!(&e, OidcError::InvalidClaim { claim, .. } if claim == "preferred_username"),
            "{e}"
        );
    }
    let e = at(json!({"preferred_username": "ann/../root"})).unwrap_err();
    assert!(e.to_string().contains("`preferred_username`"), "{e}");
    assert!(!e.to_string().contains("ann/"), "{e}");

    // An email becomes the name only when the IdP says it verified it.
    let v = verifier_with(json!({"username_claim": "email"}));
    let at = |c: Value| v.verify(&rs256(&with(claims(), c)), NOW);
    let ok = json!({"email": "ann@example.com", "email_verified": true});
    assert_eq!(at(ok).unwrap().username, "ann@example.com");
    for unverified in [json!(false), json!("false"), Value::Null] {
        let e = at(json!({"email": "ann@example.com", "email_verified": unverified})).unwrap_err();
        assert!(
            matches!(&e, OidcError::InvalidClaim { claim, .. } if claim == "email_verified"),
            "{e}"
        );
    }
    // Characters custos names do not allow are refused, not rewritten.
    let e = at(json!({"email": "ann+x@example.com", "email_verified": true})).unwrap_err();
    assert!(
        matches!(&e, OidcError::InvalidClaim { claim, .. } if claim == "email"),
        "{e}"
    );
}

#[test]
fn symmetric_and_encryption_keys_are_never_used() {
    let v = verifier();
    // Five keys in the set; the oct and the `use: enc` ones are dropped.
    assert_eq!(v.key_count(), 3);
    let oct_secret = b"a shared secret that must never verify anything";
    let hs = sign_with(
        Algorithm::HS256,
        Some("hmac-1"),
        &claims(),
        &EncodingKey::from_secret(oct_secret).unwrap(),
    );
    assert!(matches!(v.verify(&hs, NOW), Err(OidcError::AlgorithmNotAllowed(a)) if a == "HS256"));
    // Even under an allowed algorithm, their kids are simply unknown.
    for kid in ["hmac-1", "rsa-enc"] {
        let t = sign(Algorithm::RS256, kid, &claims());
        assert!(matches!(v.verify(&t, NOW), Err(OidcError::UnknownKid(k)) if k == kid));
    }
    // A set of only such keys is no key set at all.
    let jwks: Value = serde_json::from_str(&fixture("jwks.json")).unwrap();
    let only = json!({"keys": [jwks["keys"][3].clone(), jwks["keys"][4].clone()]});
    let e = OidcVerifier::new(config_with(json!({})), &only.to_string()).unwrap_err();
    assert!(matches!(e, OidcError::Jwks(_)), "{e}");
    // Short RSA moduli, unknown curves and mislabelled keys are skipped too.
    let odd = json!({"keys": [
        {"kty": "RSA", "kid": "short", "n": URL_SAFE_NO_PAD.encode([0xc5u8; 128]), "e": "AQAB"},
        {"kty": "EC", "kid": "k1", "crv": "secp256k1", "x": jwks["keys"][1]["x"], "y": jwks["keys"][1]["y"]},
        {"kty": "EC", "kid": "p384", "crv": "P-384", "x": jwks["keys"][1]["x"], "y": jwks["keys"][1]["y"]},
        {"kty": "RSA", "kid": "es", "alg": "ES256", "n": jwks["keys"][0]["n"], "e": "AQAB"},
        {"kty": "RSA", "kid": "ops", "key_ops": ["encrypt"], "n": jwks["keys"][0]["n"], "e": "AQAB"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": jwks["keys"][0]["n"], "e": "AQAB"},
        {"kty": "oct", "kid": "oct", "k": jwks["keys"][3]["k"]},
        {"kty": "RSA", "kid": "ok", "key_ops": ["verify"], "n": jwks["keys"][0]["n"], "e": "AQAB"},
    ]});
    let v = OidcVerifier::new(config_with(json!({})), &odd.to_string()).unwrap();
    assert_eq!(v.key_count(), 1);
    assert!(
        v.verify(&sign(Algorithm::RS256, "ok", &claims()), NOW)
            .is_ok()
    );
    for kid in ["short", "es", "ops", "enc", "oct"] {
        let t = sign(Algorithm::RS256, kid, &claims());
        assert!(
            matches!(v.verify(&t, NOW), Err(OidcError::UnknownKid(_))),
            "{kid}"
        );
    }
}

#[test]
fn max_age_refuses_old_tokens() {
    let v = verifier_with(json!({"max_age_secs": 600})); // leeway 30
    let at = |c: Value| v.verify(&rs256(&with(claims(), c)), NOW);
    assert!(at(json!({"iat": NOW - 630})).is_ok());
    assert!(matches!(
        at(json!({"iat": NOW - 631})),
        Err(OidcError::TooOld)
    ));
    assert!(matches!(at(json!({"iat": null})), Err(OidcError::MissingClaim(c)) if c == "iat"));
    // Without max_age, an old iat is fine while exp holds.
    assert!(
        verifier()
            .verify(&rs256(&with(claims(), json!({"iat": NOW - 86_400}))), NOW)
            .is_ok()
    );
}

fn config_error(extra: Value) -> String {
    match OidcVerifier::new(config_with(extra), &fixture("jwks.json")) {
        Err(OidcError::Config(m)) => m,
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn the_config_refuses_symmetric_algorithms_and_unknown_roles() {
    for alg in ["HS256", "HS384", "HS512", "none"] {
        let e = config_error(json!({"algorithms": ["RS256", alg]}));
        assert!(e.contains("`algorithms`") && e.contains(alg), "{e}");
    }
    let e = config_error(json!({"algorithms": ["ES512"]}));
    assert!(
        e.contains("`algorithms`") && e.contains("not a supported"),
        "{e}"
    );
    let e = config_error(json!({"algorithms": []}));
    assert!(e.contains("`algorithms`"), "{e}");

    let e = config_error(json!({"roles": [
        {"claim_value": "x", "role": "analyst"},
        {"claim_value": "y", "role": "wizard"},
    ]}));
    assert!(e.contains("`roles[1].role`") && e.contains("wizard"), "{e}");
    assert!(config_error(json!({"roles": []})).contains("`roles`"));

    // Every problem at once, each with its key.
    let e = config_error(json!({
        "issuer": "",
        "audience": [],
        "leeway_secs": 301,
        "max_age_secs": 0,
        "role_claim": "realm_access..roles",
    }));
    for key in [
        "`issuer`",
        "`audience`",
        "`leeway_secs`",
        "`max_age_secs`",
        "`role_claim`",
    ] {
        assert!(e.contains(key), "{key} in {e}");
    }
    assert_eq!(e.lines().count(), 5, "{e}");

    // Unknown keys are refused by the deserializer; defaults fill the rest.
    let r: Result<OidcConfig, _> =
        serde_json::from_value(json!({"issuer": ISS, "audience": AUD, "algorithm": "RS256"}));
    assert!(r.unwrap_err().to_string().contains("algorithm"));
    let r: Result<OidcConfig, _> = serde_json::from_value(json!({
        "issuer": ISS, "audience": AUD, "roles": [{"claim_value": "x", "role": "analyst", "when": 1}]
    }));
    assert!(r.is_err());
    let cfg: OidcConfig =
        serde_json::from_value(json!({"issuer": ISS, "audience": [AUD, "b"]})).unwrap();
    assert_eq!(cfg.audience, [AUD, "b"]);
    assert_eq!(cfg.algorithms, ["RS256", "ES256"]);
    assert_eq!(
        (cfg.username_claim.as_str(), cfg.role_claim.as_str()),
        ("sub", "roles")
    );
    assert_eq!((cfg.leeway_secs, cfg.max_age_secs), (30, None));
    assert_eq!(cfg.mfa_amr, ["mfa", "otp", "hwk", "swk"]);
    assert!(serde_json::from_value::<OidcConfig>(json!({"issuer": ISS})).is_err());
}

#[test]
fn no_message_contains_the_token_or_key_material() {
    const CANARY: &str = "CANARY-7f3a9c";
    let v = verifier_with(json!({"username_claim": "name", "max_age_secs": 60}));
    let c = with(
        claims(),
        json!({"name": CANARY, "roles": [CANARY], "jti": CANARY}),
    );
    let good = rs256(&c);
    let parts: Vec<String> = good.split('.').map(String::from).collect();
    let cases: Vec<(String, i64)> = vec![
        (good.clone(), NOW),                                       // NoRole
        (good.clone(), NOW + 10_000),                              // Expired
        (good.clone(), NOW - 10_000),                              // NotYetValid
        (rs256(&with(c.clone(), json!({"iat": NOW - 100}))), NOW), // TooOld
        (
            format!("{}.{}.{}", parts[0], b64(&json!({"x": CANARY})), parts[2]),
            NOW,
        ), // BadSignature
        (format!("{good}x"), NOW),                                 // BadSignature or Malformed
        (good.replace('.', ""), NOW),                              // Malformed
        (sign(Algorithm::RS256, "rsa-9", &c), NOW),                // UnknownKid
        (sign(Algorithm::ES256, "rsa-1", &c), NOW),                // AlgorithmNotAllowed
        (rs256(&with(c.clone(), json!({"iss": CANARY}))), NOW),    // WrongIssuer
        (rs256(&with(c.clone(), json!({"aud": CANARY}))), NOW),    // WrongAudience
        (
            rs256(&with(c.clone(), json!({"name": format!("{CANARY} !")}))),
            NOW,
        ), // InvalidClaim
        (rs256(&with(c.clone(), json!({"exp": CANARY}))), NOW),    // InvalidClaim
    ];
    let mut seen = std::collections::HashSet::new();
    for (token, now) in &cases {
        let e = v.verify(token, *now).unwrap_err();
        seen.insert(std::mem::discriminant(&e));
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains(CANARY), "{text}");
            for part in token.split('.').filter(|p| p.len() > 8) {
                assert!(!text.contains(part), "{text}");
            }
        }
    }
    assert!(seen.len() >= 10, "only {} distinct errors", seen.len());

    // The verifier's Debug names keys, never their material.
    let jwks: Value = serde_json::from_str(&fixture("jwks.json")).unwrap();
    let debug = format!("{:?}", verifier());
    assert!(debug.contains("rsa-1") && debug.contains("ec-1"), "{debug}");
    for key in jwks["keys"].as_array().unwrap() {
        for field in ["n", "x", "y", "k"] {
            if let Some(m) = key[field].as_str() {
                assert!(!debug.contains(&m[..16]), "{field} leaked: {debug}");
            }
        }
    }
    assert!(!debug.contains("hmac-1"), "{debug}");
}
