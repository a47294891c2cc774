//! `fake-opensync [--port N] [--key K] [--latency-ms N]`
//! Serves the fake OpenSync API on 127.0.0.1 until SIGINT/SIGTERM. Prints `url=...` and
//! `key=...` lines on stdout once it is listening.

use std::io::Write;

use fake_opensync::{FakeOpenSync, FakeOptions};

fn usage() -> ! {
    eprintln!("usage: fake-opensync [--port N] [--key osk_KEY] [--latency-ms N]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut opts = FakeOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--port" => opts.port = val().parse().unwrap_or_else(|_| usage()),
            "--key" => opts.key = Some(val()),
            "--latency-ms" => opts.latency_ms = val().parse().unwrap_or_else(|_| usage()),
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    let fake = match FakeOpenSync::start(opts).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fake-opensync: {e}");
            std::process::exit(1)
        }
    };
    println!("url={}", fake.url);
    println!("key={}", fake.key());
    let _ = std::io::stdout().flush();
    shutdown_signal().await;
    fake.stop().await;
}

#[cfg(unix)]
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(not(unix))]
async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
