//! The `Jsonl` kind (prompt history and similar append-mostly logs): a multiset of lines.
//!
//! Lines are compared exactly (after stripping a `\r` line ending); blank lines are dropped. For each
//! distinct line, with `b`, `l`, `r` its counts in base, local and remote:
//! `merged = b - max(deleted_l, deleted_r) + max(added_l, added_r)`, where `added_x = max(0, x - b)`
//! and `deleted_x = max(0, b - x)`. So a line added on either side is kept, the same line added on
//! both sides appears once, and a line deleted on either side (present in base) is deleted.
//! Legitimately repeated lines (the same prompt typed twice) keep their multiplicity.
//! There are no conflicts; the only error is non-UTF-8 input. Lines need not be valid JSON (a
//! half-written last line is carried along like any other line rather than failing the item).
//!
//! If one side's lines equal base's, the other side is taken as it is (its own order). Otherwise the
//! order is: base's surviving lines in base order, then local's new lines, then remote's new lines —
//! unless every merged line is a JSON object with a numeric timestamp (see [`line_time`]), in which
//! case that sequence is stably sorted by time. Output uses local's line ending (`\n` unless local
//! uses `\r\n`) and ends with a newline; if the merged lines equal local's, local bytes are kept.

use std::collections::HashMap;

use serde_json::Value;

use super::{Input, MergeError, MergeOutcome};

fn lines(bytes: &[u8], side: Input) -> Result<Vec<&str>, MergeError> {
    let text = super::utf8(bytes, side)?;
    Ok(text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty())
        .collect())
}

fn counts<'a>(lines: &[&'a str]) -> HashMap<&'a str, usize> {
    let mut m = HashMap::new();
    for l in lines {
        *m.entry(*l).or_insert(0) += 1;
    }
    m
}

pub fn merge_jsonl(
    base: Option<&[u8]>,
    local: &[u8],
    remote: &[u8],
) -> Result<MergeOutcome, MergeError> {
    let b = lines(base.unwrap_or_default(), Input::Base)?;
    let l = lines(local, Input::Local)?;
    let r = lines(remote, Input::Remote)?;
    let eol = if local.windows(2).any(|w| w == b"\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    // One side unchanged (as lines): the other side is the answer, in its own order.
    if r == b || r == l {
        return Ok(MergeOutcome::clean(local.to_vec()));
    }
    if l == b {
        return Ok(MergeOutcome::clean(render(&r, eol)));
    }
    let (cb, cl, cr) = (counts(&b), counts(&l), counts(&r));
    let get = |m: &HashMap<&str, usize>, k: &str| m.get(k).copied().unwrap_or(0);

    // How many base occurrences of each line survive, and how many new occurrences are added.
    let keep = |k: &str| {
        let (nb, nl, nr) = (get(&cb, k), get(&cl, k), get(&cr, k));
        nb - nb.saturating_sub(nl).max(nb.saturating_sub(nr))
    };
    let extra = |k: &str| {
        let (nb, nl, nr) = (get(&cb, k), get(&cl, k), get(&cr, k));
        nl.saturating_sub(nb).max(nr.saturating_sub(nb))
    };

    let mut out: Vec<&str> = Vec::new();
    let mut emitted_base: HashMap<&str, usize> = HashMap::new();
    for line in &b {
        let n = emitted_base.entry(line).or_insert(0);
        if *n < keep(line) {
            *n += 1;
            out.push(line);
        }
    }
    let mut emitted_new: HashMap<&str, usize> = HashMap::new();
    for side in [&l, &r] {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for line in side.iter() {
            let s = seen.entry(line).or_insert(0);
            *s += 1;
            // Only occurrences beyond base's count are new on this side.
            if *s <= get(&cb, line) {
                continue;
            }
            let n = emitted_new.entry(line).or_insert(0);
            if *n < extra(line) {
                *n += 1;
                out.push(line);
            }
        }
    }

    if let Some(times) = out
        .iter()
        .map(|l| line_time(l))
        .collect::<Option<Vec<f64>>>()
    {
        let mut idx: Vec<usize> = (0..out.len()).collect();
        idx.sort_by(|&a, &b| times[a].total_cmp(&times[b]));
        out = idx.into_iter().map(|i| out[i]).collect();
    }

    if out == l {
        return Ok(MergeOutcome::clean(local.to_vec()));
    }
    Ok(MergeOutcome::clean(render(&out, eol)))
}

fn render(lines: &[&str], eol: &str) -> Vec<u8> {
    let mut text = String::new();
    for line in lines {
        text.push_str(line);
        text.push_str(eol);
    }
    text.into_bytes()
}

/// The timestamp of a JSONL line: the first numeric field among `time`, `timestamp`, `ts`,
/// `createdAt`, `created_at`, `time_created`, or a nested `{"time": {"created": N}}` (OpenCode's
/// own storage shape). `None` if the line is not a JSON object or has no such field.
pub fn line_time(line: &str) -> Option<f64> {
    let Value::Object(obj) = serde_json::from_str::<Value>(line).ok()? else {
        return None;
    };
    for key in [
        "time",
        "timestamp",
        "ts",
        "createdAt",
        "created_at",
        "time_created",
    ] {
        match obj.get(key) {
            Some(Value::Number(n)) => return n.as_f64(),
            Some(Value::Object(inner)) => {
                if let Some(Value::Number(n)) = inner.get("created") {
                    return n.as_f64();
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::merge::{Input, MergeError, MergeKind, Side, merge};

    fn mj(base: Option<&str>, local: &str, remote: &str) -> String {
        let m = merge(
            MergeKind::Jsonl,
            base.map(str::as_bytes),
            local.as_bytes(),
            remote.as_bytes(),
            Side::Local,
        )
        .unwrap();
        assert!(m.conflicts.is_empty());
        String::from_utf8(m.bytes).unwrap()
    }

    #[test]
    fn additions_from_both_sides_are_kept_in_base_local_remote_order() {
        let base = "{\"input\":\"a\"}\n{\"input\":\"b\"}\n";
        let local = "{\"input\":\"a\"}\n{\"input\":\"b\"}\n{\"input\":\"L\"}\n";
        let remote = "{\"input\":\"a\"}\n{\"input\":\"R\"}\n{\"input\":\"b\"}\n";
        assert_eq!(
            mj(Some(base), local, remote),
            "{\"input\":\"a\"}\n{\"input\":\"b\"}\n{\"input\":\"L\"}\n{\"input\":\"R\"}\n"
        );
    }

    #[test]
    fn deletion_on_one_side_deletes() {
        let base = "a\nb\nc\n";
        assert_eq!(mj(Some(base), "a\nc\n", "a\nb\nc\nd\n"), "a\nc\nd\n");
    }

    #[test]
    fn same_line_added_on_both_sides_appears_once() {
        assert_eq!(mj(Some("a\n"), "a\nx\n", "a\nx\ny\n"), "a\nx\ny\n");
        assert_eq!(mj(None, "x\n", "x\n"), "x\n");
    }

    #[test]
    fn repeated_lines_keep_multiplicity() {
        assert_eq!(mj(Some("p\n"), "p\np\n", "p\n"), "p\np\n");
        assert_eq!(mj(Some("p\np\n"), "p\np\n", "p\np\nq\n"), "p\np\nq\n");
    }

    #[test]
    fn sorted_by_time_when_every_line_has_one() {
        let base = "{\"ts\":1,\"v\":\"a\"}\n";
        let local = "{\"ts\":1,\"v\":\"a\"}\n{\"ts\":5,\"v\":\"l\"}\n";
        let remote = "{\"ts\":1,\"v\":\"a\"}\n{\"ts\":3,\"v\":\"r\"}\n";
        assert_eq!(
            mj(Some(base), local, remote),
            "{\"ts\":1,\"v\":\"a\"}\n{\"ts\":3,\"v\":\"r\"}\n{\"ts\":5,\"v\":\"l\"}\n"
        );
        let local = "{\"time\":{\"created\":20}}\n";
        let remote = "{\"time\":{\"created\":10}}\n";
        assert_eq!(
            mj(None, local, remote),
            "{\"time\":{\"created\":10}}\n{\"time\":{\"created\":20}}\n"
        );
    }

    #[test]
    fn no_time_sort_when_a_line_lacks_time() {
        let local = "{\"ts\":5}\n";
        let remote = "{\"ts\":3}\n{\"x\":1}\n";
        assert_eq!(
            mj(None, local, remote),
            "{\"ts\":5}\n{\"ts\":3}\n{\"x\":1}\n"
        );
    }

    #[test]
    fn crlf_local_style_missing_newline_empty_and_unicode() {
        assert_eq!(mj(Some("a\r\n"), "a\r\nb", "a\nc\n"), "a\r\nb\r\nc\r\n");
        assert_eq!(mj(Some(""), "", ""), "");
        assert_eq!(mj(None, "", "\"日本語\"\n"), "\"日本語\"\n");
        // Unchanged lines: local bytes kept exactly, even without trailing newline.
        assert_eq!(mj(Some("a\n"), "a", "a\n"), "a");
        // Blank lines are not entries.
        assert_eq!(mj(None, "a\n\n\n", "\nb\n"), "a\nb\n");
    }

    #[test]
    fn not_utf8_is_an_error() {
        let e = merge(
            MergeKind::Jsonl,
            Some(b"a"),
            b"a",
            &[0xc3, 0x28],
            Side::Local,
        )
        .unwrap_err();
        assert!(matches!(
            e,
            MergeError::NotUtf8 {
                side: Input::Remote,
                ..
            }
        ));
    }
}
