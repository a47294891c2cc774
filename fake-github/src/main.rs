//! `fake-github --port N --root DIR [--token T] [--repo owner/name[:public]]...`
//! Serves the fake GitHub API on 127.0.0.1 until Ctrl-C.

use fake_github::{FakeGithub, FakeOptions};

fn usage() -> ! {
    eprintln!("usage: fake-github [--port N] [--root DIR] [--token TOKEN] [--login LOGIN] [--repo OWNER/NAME[:public]]...");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut opts = FakeOptions::default();
    let mut repos = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--port" => opts.port = val().parse().unwrap_or_else(|_| usage()),
            "--root" => opts.root = Some(val().into()),
            "--token" => opts.token = Some(val()),
            "--login" => opts.login = val(),
            "--repo" => repos.push(val()),
            _ => usage(),
        }
    }
    let gh = match FakeGithub::start(opts).await {
        Ok(gh) => gh,
        Err(e) => {
            eprintln!("fake-github: {e}");
            std::process::exit(1)
        }
    };
    for r in repos {
        let (spec, public) = match r.strip_suffix(":public") {
            Some(s) => (s.to_string(), true),
            None => (r.clone(), false),
        };
        let Some((owner, name)) = spec.split_once('/') else { usage() };
        gh.add_repo(owner, name, !public, true);
    }
    println!("url={}", gh.url);
    println!("token={}", gh.token());
    println!("root={}", gh.root.display());
    let _ = tokio::signal::ctrl_c().await;
    gh.stop().await;
}
