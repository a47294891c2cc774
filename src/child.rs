//! Running another program with a time limit (OpenCode, or oc-sync's own CLI as a helper process),
//! its output collected on threads so a chatty child never stalls on a full pipe.

use std::io::{self, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a child that ended within its time ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (stdin closed, stdout and stderr collected) for at most `wait`: the child is killed
/// then, and `Ok(None)` says so.
pub fn run_within(cmd: &mut Command, wait: Duration) -> io::Result<Option<Finished>> {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let out = collect(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = collect(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + wait;
    let status = loop {
        match child.try_wait()? {
            Some(s) => break s,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(25)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
        }
    };
    Ok(Some(Finished { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }))
}

fn collect(pipe: Option<Box<dyn Read + Send>>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut s);
        }
        s
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn output_is_collected_and_a_slow_child_is_killed() {
        let done = run_within(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]), Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!((done.status.code(), done.stdout.as_str(), done.stderr.as_str()), (Some(3), "out\n", "err\n"));
        let t = Instant::now();
        assert!(run_within(Command::new("sleep").arg("30"), Duration::from_millis(200)).unwrap().is_none());
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
