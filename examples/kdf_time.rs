//! Times one PBKDF2-HMAC-SHA256 key derivation at the default iteration count.
//! Run: `cargo run --release --example kdf_time`
fn main() {
    let n = oc_sync::crypto::DEFAULT_ITERATIONS;
    let runs: Vec<f64> = (0..5).map(|_| oc_sync::crypto::derivation_time(n).as_secs_f64() * 1000.0).collect();
    let best = runs.iter().cloned().fold(f64::MAX, f64::min);
    println!("PBKDF2-HMAC-SHA256, {n} iterations: best {best:.1} ms of 5 ({})", runs.iter().map(|r| format!("{r:.1}")).collect::<Vec<_>>().join(", "));
}
