use std::cell::Cell;

use serde_json::{Value, json};

use super::*;

/// Small iteration count so the tests stay fast (one test uses the default).
const IT: u32 = 1_000;
const SECRET: &str = "sk-test-SECRET-1234567890";

thread_local! {
    static DERIVATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Test hook called by `derive_key`. Derivation runs on the calling thread, so a thread-local
/// count is exact even while other tests run in parallel.
pub(super) fn count_derivation() {
    DERIVATIONS.with(|c| c.set(c.get() + 1));
}

fn derivations() -> u64 {
    DERIVATIONS.with(Cell::get)
}

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s).unwrap()
}

/// A passphrase no other test uses, so the process-wide cache has nothing for it yet.
fn unique_pass() -> Passphrase {
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).unwrap();
    pass(&format!("unique-test-passphrase-{}", hex::encode(r)))
}

fn sealer(p: &str) -> Sealer {
    Sealer::new(pass(p), None).with_iterations(IT)
}

fn fields(envelope: &[u8]) -> serde_json::Map<String, Value> {
    match serde_json::from_slice(envelope).unwrap() {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// The envelope with one field replaced.
fn with_field(envelope: &[u8], name: &str, value: Value) -> Vec<u8> {
    let mut m = fields(envelope);
    m.insert(name.to_owned(), value);
    serde_json::to_vec(&m).unwrap()
}

fn b64_field(envelope: &[u8], name: &str) -> Vec<u8> {
    B64.decode(fields(envelope)[name].as_str().unwrap())
        .unwrap()
}

fn assert_malformed(r: Result<Opened, CryptoError>, what: &str) -> String {
    match r {
        Err(CryptoError::Malformed(msg)) => msg,
        other => panic!("{what}: expected Malformed, got {other:?}"),
    }
}

fn assert_wrong(r: Result<Opened, CryptoError>, what: &str) {
    match r {
        Err(CryptoError::WrongPassphrase) => {}
        other => panic!("{what}: expected WrongPassphrase, got {other:?}"),
    }
}

const P1: &str = "correct horse battery staple";
const P2: &str = "another long passphrase, different";

#[test]
fn passphrase_length_is_checked_in_characters() {
    let err = Passphrase::new("fifteen chars!!").unwrap_err();
    assert!(matches!(err, CryptoError::PassphraseTooShort));
    assert!(
        err.to_string()
            .starts_with("the passphrase must have at least 16 characters")
    );
    assert!(Passphrase::new("").is_err());
    assert!(Passphrase::new("sixteen chars!!!").is_ok());
    // 15 two-byte characters are 30 bytes but still too short; 16 are enough.
    assert!(Passphrase::new(&"é".repeat(15)).is_err());
    assert!(Passphrase::new(&"é".repeat(16)).is_ok());
}

#[test]
fn debug_never_shows_secrets() {
    let p = pass(P1);
    assert_eq!(format!("{p:?}"), "Passphrase(****)");
    let s = Sealer::new(pass(P1), Some(pass(P2))).with_iterations(IT);
    let env = s.seal(SECRET.as_bytes(), b"aad").unwrap();
    let dbg = format!("{s:?}");
    assert!(!dbg.contains(P1) && !dbg.contains(P2), "{dbg}");
    let opened = s.open(&env, b"aad").unwrap();
    let dbg = format!("{opened:?}");
    assert!(!dbg.contains(SECRET), "{dbg}");
    assert!(dbg.contains("<25 bytes>"), "{dbg}");
}

#[test]
fn round_trips() {
    let s = sealer(P1);
    let mut mib = vec![0u8; 1 << 20];
    getrandom::fill(&mut mib).unwrap();
    let unicode = "clé: 秘密 🔑 — ünïcödé\u{0}\u{10FFFF}".as_bytes().to_vec();
    for (i, plain) in [Vec::new(), b"{\"a\":1}".to_vec(), mib, unicode]
        .into_iter()
        .enumerate()
    {
        let aad = format!("auth.json@{i}");
        let env = s.seal(&plain, aad.as_bytes()).unwrap();
        assert!(Sealer::is_envelope(&env));
        let opened = s.open(&env, aad.as_bytes()).unwrap();
        assert_eq!(opened.plaintext, plain, "case {i}");
        assert!(!opened.with_old_key);
        assert_eq!(opened.iterations, IT);
        // Another machine (own salt) with the same passphrase opens it too.
        let other = sealer(P1);
        assert_eq!(other.open(&env, aad.as_bytes()).unwrap().plaintext, plain);
    }
}

#[test]
fn envelope_format() {
    let s = sealer(P1);
    let env = s.seal(b"hello", b"k").unwrap();
    let text = std::str::from_utf8(&env).unwrap();
    assert!(text.starts_with("{\"oc-sync-envelope\":1,\"alg\":\"AES-256-GCM\",\"kdf\":\"PBKDF2-HMAC-SHA256\",\"iterations\":1000,\"salt\":\""), "{text}");
    let m = fields(&env);
    assert_eq!(
        m.keys().collect::<Vec<_>>(),
        [
            "oc-sync-envelope",
            "alg",
            "kdf",
            "iterations",
            "salt",
            "nonce",
            "ciphertext"
        ]
    );
    assert_eq!(b64_field(&env, "salt").len(), 16);
    assert_eq!(b64_field(&env, "nonce").len(), 12);
    assert_eq!(b64_field(&env, "ciphertext").len(), 5 + 16);
    // Independently decryptable with the documented construction.
    let key = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(P1.as_bytes(), &b64_field(&env, "salt"), IT);
    let nonce: [u8; 12] = b64_field(&env, "nonce").try_into().unwrap();
    let ct = b64_field(&env, "ciphertext");
    let plain = Aes256Gcm::new(&key.into())
        .decrypt(
            &nonce.into(),
            Payload {
                msg: &ct,
                aad: b"k",
            },
        )
        .unwrap();
    assert_eq!(plain, b"hello");
}

#[test]
fn seals_differ_but_share_the_sealers_salt() {
    let s = sealer(P1);
    let a = s.seal(SECRET.as_bytes(), b"x").unwrap();
    let b = s.seal(SECRET.as_bytes(), b"x").unwrap();
    assert_ne!(a, b);
    assert_ne!(b64_field(&a, "nonce"), b64_field(&b, "nonce"));
    assert_ne!(b64_field(&a, "ciphertext"), b64_field(&b, "ciphertext"));
    assert_eq!(b64_field(&a, "salt"), b64_field(&b, "salt"));
    // Another sealer picks another salt.
    let c = sealer(P1).seal(SECRET.as_bytes(), b"x").unwrap();
    assert_ne!(b64_field(&a, "salt"), b64_field(&c, "salt"));
    for e in [&a, &b, &c] {
        assert_eq!(s.open(e, b"x").unwrap().plaintext, SECRET.as_bytes());
    }
}

#[test]
fn envelope_contains_no_plaintext() {
    let s = sealer(P1);
    let plain = format!("{{\"openai\":{{\"type\":\"api\",\"key\":\"{SECRET}\"}}}}");
    let env = s.seal(plain.as_bytes(), b"auth.json").unwrap();
    let text = String::from_utf8(env.clone()).unwrap();
    assert!(!text.contains(SECRET));
    assert!(!text.contains("SECRET"));
    assert!(!text.contains(&B64.encode(&plain)));
    assert!(!text.contains(&B64.encode(SECRET)));
    assert!(!text.contains(P1));
    // Nor do the errors about it.
    let errs = [
        s.open(&env, b"other").unwrap_err().to_string(),
        sealer(P2).open(&env, b"auth.json").unwrap_err().to_string(),
        s.open(plain.as_bytes(), b"auth.json")
            .unwrap_err()
            .to_string(),
        s.open(&env[..env.len() / 2], b"auth.json")
            .unwrap_err()
            .to_string(),
    ];
    for e in errs {
        assert!(
            !e.contains(SECRET) && !e.contains(P1) && !e.contains(P2),
            "{e}"
        );
    }
}

#[test]
fn tampered_ciphertext_is_rejected() {
    let s = sealer(P1);
    let env = s.seal(SECRET.as_bytes(), b"a").unwrap();
    let ct = b64_field(&env, "ciphertext");
    for i in [0, ct.len() / 2, ct.len() - 1] {
        let mut bad = ct.clone();
        bad[i] ^= 0x01;
        assert_wrong(
            s.open(
                &with_field(&env, "ciphertext", json!(B64.encode(&bad))),
                b"a",
            ),
            "ct byte",
        );
    }
}

#[test]
fn tampered_nonce_is_rejected() {
    let s = sealer(P1);
    let env = s.seal(SECRET.as_bytes(), b"a").unwrap();
    let mut nonce = b64_field(&env, "nonce");
    nonce[0] ^= 0x80;
    assert_wrong(
        s.open(&with_field(&env, "nonce", json!(B64.encode(&nonce))), b"a"),
        "nonce",
    );
    // Wrong length is malformed, not a key problem.
    assert_malformed(
        s.open(
            &with_field(&env, "nonce", json!(B64.encode([0u8; 11]))),
            b"a",
        ),
        "short nonce",
    );
}

#[test]
fn swapped_salt_is_rejected() {
    let s = sealer(P1);
    let env = s.seal(SECRET.as_bytes(), b"a").unwrap();
    let other = sealer(P1).seal(b"x", b"a").unwrap();
    let swapped = with_field(&env, "salt", fields(&other)["salt"].clone());
    assert_wrong(s.open(&swapped, b"a"), "swapped salt");
    assert_malformed(
        s.open(
            &with_field(&env, "salt", json!(B64.encode([1u8; 32]))),
            b"a",
        ),
        "long salt",
    );
}

#[test]
fn wrong_aad_is_rejected() {
    let s = sealer(P1);
    let env = s.seal(SECRET.as_bytes(), b"auth.json\0v3").unwrap();
    assert_wrong(s.open(&env, b"auth.json\0v4"), "other version");
    assert_wrong(s.open(&env, b""), "empty aad");
    let env = s.seal(SECRET.as_bytes(), b"").unwrap();
    assert_wrong(s.open(&env, b"auth.json"), "aad where none was");
    assert!(s.open(&env, b"").is_ok());
}

#[test]
fn truncated_envelopes_are_malformed() {
    let s = sealer(P1);
    let env = s.seal(SECRET.as_bytes(), b"a").unwrap();
    for cut in [0, 1, 10, env.len() / 2, env.len() - 2, env.len() - 1] {
        assert_malformed(s.open(&env[..cut], b"a"), &format!("cut at {cut}"));
    }
}

#[test]
fn truncated_ciphertext_is_rejected() {
    let s = sealer(P1);
    let env = s.seal(SECRET.as_bytes(), b"a").unwrap();
    let ct = b64_field(&env, "ciphertext");
    // Shorter than the tag: malformed.
    let msg = assert_malformed(
        s.open(
            &with_field(&env, "ciphertext", json!(B64.encode(&ct[..15]))),
            b"a",
        ),
        "under a tag",
    );
    assert!(msg.contains("truncated"), "{msg}");
    assert_malformed(
        s.open(&with_field(&env, "ciphertext", json!("")), b"a"),
        "empty ct",
    );
    // Still at least a tag long: indistinguishable from a wrong key.
    assert_wrong(
        s.open(
            &with_field(&env, "ciphertext", json!(B64.encode(&ct[..ct.len() - 3]))),
            b"a",
        ),
        "3 bytes short",
    );
    // Cutting the base64 text mid-quantum: not base64.
    let text = fields(&env)["ciphertext"].as_str().unwrap().to_owned();
    assert_malformed(
        s.open(
            &with_field(&env, "ciphertext", json!(text[..text.len() - 1])),
            b"a",
        ),
        "b64 cut",
    );
    assert_malformed(
        s.open(&with_field(&env, "ciphertext", json!("!!!!")), b"a"),
        "bad b64",
    );
}

#[test]
fn non_envelopes_are_malformed() {
    let s = sealer(P1);
    let auth = format!("{{\"openai\":{{\"type\":\"api\",\"key\":\"{SECRET}\"}}}}");
    let cases: [&[u8]; 9] = [
        b"",
        b"null",
        b"[]",
        b"\"oc-sync-envelope\"",
        b"\xff\xfe\x00garbage",
        auth.as_bytes(),
        b"{}",
        b"{\"oc-sync-envelope\":1}",
        b"{\"oc-sync-envelope\":1,\"alg\":\"AES-256-GCM\",\"kdf\":\"PBKDF2-HMAC-SHA256\",\"iterations\":1000,\"salt\":7}",
    ];
    for (i, c) in cases.into_iter().enumerate() {
        let msg = assert_malformed(s.open(c, b"a"), &format!("case {i}"));
        assert!(!msg.contains(SECRET), "{msg}");
        assert_eq!(Sealer::is_envelope(c), i >= 7, "is_envelope case {i}");
    }
}

#[test]
fn unknown_versions_and_algorithms_are_malformed() {
    let s = sealer(P1);
    let env = s.seal(SECRET.as_bytes(), b"a").unwrap();
    let v2 = with_field(&env, "oc-sync-envelope", json!(2));
    assert!(
        Sealer::is_envelope(&v2),
        "a future version is still an envelope, never plaintext"
    );
    let msg = assert_malformed(s.open(&v2, b"a"), "v2");
    assert!(
        msg.contains("version 2") && msg.contains("upgrade"),
        "{msg}"
    );
    for v in [json!(0), json!("1"), json!(null), json!(1.5)] {
        assert_malformed(
            s.open(&with_field(&env, "oc-sync-envelope", v), b"a"),
            "bad version",
        );
    }
    assert_malformed(
        s.open(&with_field(&env, "alg", json!("ChaCha20-Poly1305")), b"a"),
        "alg",
    );
    assert_malformed(
        s.open(&with_field(&env, "kdf", json!("argon2id")), b"a"),
        "kdf",
    );
    let huge = "x".repeat(10_000);
    let msg = assert_malformed(
        s.open(&with_field(&env, "alg", json!(huge)), b"a"),
        "long alg",
    );
    assert!(msg.len() < 300, "error messages stay short");
}

#[test]
fn absurd_iteration_counts_are_malformed_without_deriving() {
    let s = sealer(P1);
    let env = s.seal(SECRET.as_bytes(), b"a").unwrap();
    let before = derivations();
    let start = Instant::now();
    for it in [
        json!(10_000_001u64),
        json!(u64::MAX),
        json!(1u64 << 40),
        json!(999),
        json!(0),
        json!(-5),
        json!(1e6),
        json!("1000"),
    ] {
        assert_malformed(
            s.open(&with_field(&env, "iterations", it.clone()), b"a"),
            &format!("{it}"),
        );
    }
    assert_eq!(derivations(), before);
    assert!(start.elapsed() < Duration::from_secs(1));
    // The bounds themselves are accepted (well-formed; the key no longer matches).
    assert_wrong(
        s.open(
            &with_field(&env, "iterations", json!(MIN_ITERATIONS + 1)),
            b"a",
        ),
        "min+1",
    );
}

#[test]
fn wrong_passphrase_has_the_exact_message() {
    let env = sealer(P1).seal(SECRET.as_bytes(), b"a").unwrap();
    let err = sealer(P2).open(&env, b"a").unwrap_err();
    assert!(matches!(err, CryptoError::WrongPassphrase));
    let msg = err.to_string();
    assert!(msg.starts_with(
        "the passphrase on this machine does not match the one that encrypted the remote credentials"
    ));
    assert_eq!(msg, WRONG_PASSPHRASE_MESSAGE);
    assert!(
        msg.contains("OC_SYNC_PASSPHRASE")
            && msg.contains("encryptionKey")
            && msg.contains("oldEncryptionKey")
    );
    // A non-matching old passphrase does not help either.
    let s = Sealer::new(pass(P2), Some(pass("yet another wrong passphrase"))).with_iterations(IT);
    assert_wrong(s.open(&env, b"a"), "wrong old too");
}

#[test]
fn old_passphrase_opens_and_new_seals_use_the_new_one() {
    let old_env = sealer(P1).seal(SECRET.as_bytes(), b"a").unwrap();
    let rotating = Sealer::new(pass(P2), Some(pass(P1))).with_iterations(IT);
    let opened = rotating.open(&old_env, b"a").unwrap();
    assert_eq!(opened.plaintext, SECRET.as_bytes());
    assert!(opened.with_old_key);

    let new_env = rotating.seal(&opened.plaintext, b"a").unwrap();
    let opened = rotating.open(&new_env, b"a").unwrap();
    assert!(!opened.with_old_key);
    // Only the new passphrase opens what it sealed.
    assert_eq!(
        sealer(P2).open(&new_env, b"a").unwrap().plaintext,
        SECRET.as_bytes()
    );
    assert_wrong(
        sealer(P1).open(&new_env, b"a"),
        "old passphrase on new envelope",
    );
    // Same passphrase as current and old: the current one wins.
    let same = Sealer::new(pass(P1), Some(pass(P1))).with_iterations(IT);
    assert!(!same.open(&old_env, b"a").unwrap().with_old_key);
}

#[test]
fn keys_are_derived_once_per_passphrase_salt_and_iterations() {
    let p = unique_pass();
    let a = Sealer::new(p.clone(), None).with_iterations(IT);
    let d0 = derivations();
    let env = a.seal(b"one", b"a").unwrap();
    assert_eq!(derivations() - d0, 1, "first seal derives");
    let env2 = a.seal(b"two", b"a").unwrap();
    a.open(&env, b"a").unwrap();
    a.open(&env2, b"a").unwrap();
    assert_eq!(derivations() - d0, 1, "same salt: cached");

    // Another sealer in this process with the same passphrase reuses the cached key for a's salt.
    let b = Sealer::new(p.clone(), None).with_iterations(IT);
    b.open(&env, b"a").unwrap();
    assert_eq!(derivations() - d0, 1, "cache is process-wide");
    // ...but its own salt needs one derivation.
    b.seal(b"three", b"a").unwrap();
    assert_eq!(derivations() - d0, 2);
    // Another iteration count is another key.
    let c = Sealer::new(p, None).with_iterations(IT + 1);
    c.seal(b"four", b"a").unwrap();
    c.seal(b"five", b"a").unwrap();
    assert_eq!(derivations() - d0, 3);
}

#[test]
fn sealer_is_shareable_across_threads() {
    let s = std::sync::Arc::new(Sealer::new(unique_pass(), None).with_iterations(IT));
    let envs: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let s = std::sync::Arc::clone(&s);
            std::thread::spawn(move || s.seal(format!("item {i}").as_bytes(), b"a").unwrap())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let salt = b64_field(&envs[0], "salt");
    for (i, e) in envs.iter().enumerate() {
        assert_eq!(b64_field(e, "salt"), salt, "one salt per sealer");
        assert_eq!(
            s.open(e, b"a").unwrap().plaintext,
            format!("item {i}").as_bytes()
        );
    }
}

#[test]
fn every_single_byte_change_is_rejected_without_panicking() {
    let s = sealer(P1);
    let env = s.seal(b"{\"k\":\"v\"}", b"a").unwrap();
    for i in 0..env.len() {
        for replacement in [b'A', b'0', b'"', b'}', 0xff] {
            if env[i] == replacement {
                continue;
            }
            let mut bad = env.clone();
            bad[i] = replacement;
            let r = s.open(&bad, b"a");
            assert!(r.is_err(), "byte {i} -> {replacement:#x} still opened");
        }
    }
}

#[test]
fn with_iterations_clamps_to_what_open_accepts() {
    assert_eq!(Sealer::new(pass(P1), None).iterations(), DEFAULT_ITERATIONS);
    assert_eq!(
        Sealer::new(pass(P1), None).with_iterations(1).iterations(),
        MIN_ITERATIONS
    );
    assert_eq!(
        Sealer::new(pass(P1), None)
            .with_iterations(u32::MAX)
            .iterations(),
        MAX_ITERATIONS
    );
}

#[test]
fn derivation_time_derives_once() {
    let before = derivations();
    let t = derivation_time(IT);
    assert_eq!(derivations() - before, 1);
    assert!(t < Duration::from_secs(5));
}

#[test]
fn default_iterations_work() {
    let s = Sealer::new(unique_pass(), None);
    let env = s.seal(SECRET.as_bytes(), b"auth.json").unwrap();
    assert_eq!(fields(&env)["iterations"], json!(DEFAULT_ITERATIONS));
    let opened = s.open(&env, b"auth.json").unwrap();
    assert_eq!(opened.plaintext, SECRET.as_bytes());
    assert_eq!(opened.iterations, DEFAULT_ITERATIONS);
    assert!(!opened.with_old_key);
}
