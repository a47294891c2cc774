//! The `Text` kind: line-based diff3.
//!
//! Crate choice: `similar` (3.x). It is the most widely used pure-Rust diff crate (used by `insta`,
//! `cargo-insta`, rustfmt tooling), actively maintained, dependency-light, and since 3.0 it has
//! [`similar::TextMerge`], a diff3 that returns *structured regions* (unchanged / ours / theirs /
//! both / conflict, each with line ranges into the three inputs). That is exactly what this module
//! needs: each conflicting region is resolved by `prefer` and reported, without ever rendering and
//! re-parsing conflict markers (which `diffy::merge` would force on us, and which would break on
//! files that themselves contain `<<<<<<<` lines).
//!
//! Handling of line endings: all three sides are compared with `\r\n` normalised to `\n`, so a
//! machine that stores the file with CRLF and one with LF do not conflict on every line. The result
//! uses the local file's style (CRLF if most of local's line breaks are CRLF; if local has no line
//! breaks, remote's style). Whether the file ends with a newline is merged three-way like a tiny
//! value (it cannot conflict: it is a boolean). Files with mixed line endings come out in one style.

use std::ops::Range;

use similar::{MergeResolution, TextMerge};

use super::{Conflict, Input, MergeError, MergeOutcome, Side};

#[derive(Clone, Copy)]
enum Part {
    Base,
    Ours,
    Theirs,
}

/// A side's text with `\r\n` → `\n` and a final newline ensured, plus whether it originally ended with
/// a newline (an empty text counts as "ends with a newline": it has no unterminated last line).
struct Normalized {
    text: String,
    ends_with_newline: bool,
}

fn normalize(text: &str) -> Normalized {
    let mut t = text.replace("\r\n", "\n");
    let ends_with_newline = t.is_empty() || t.ends_with('\n');
    if !ends_with_newline {
        t.push('\n');
    }
    Normalized {
        text: t,
        ends_with_newline,
    }
}

/// `Some(true)` for CRLF, `Some(false)` for LF, `None` if the text has no line breaks.
fn crlf_style(text: &str) -> Option<bool> {
    let lf = text.matches('\n').count();
    if lf == 0 {
        return None;
    }
    let crlf = text.matches("\r\n").count();
    Some(crlf * 2 > lf)
}

pub fn merge_text(
    base: Option<&[u8]>,
    local: &[u8],
    remote: &[u8],
    prefer: Side,
) -> Result<MergeOutcome, MergeError> {
    let b = super::utf8(base.unwrap_or_default(), Input::Base)?;
    let l = super::utf8(local, Input::Local)?;
    let r = super::utf8(remote, Input::Remote)?;
    if l == r || r == b {
        return Ok(MergeOutcome::clean(local.to_vec()));
    }
    let (nb, nl, nr) = (normalize(b), normalize(l), normalize(r));

    let merge = TextMerge::from_lines(nb.text.as_str(), nl.text.as_str(), nr.text.as_str());
    let mut out = String::with_capacity(nl.text.len().max(nr.text.len()));
    let mut out_lines = 0usize;
    let mut conflicts = Vec::new();
    let join = |part: Part, range: Range<usize>| -> String {
        range
            .filter_map(|i| match part {
                Part::Base => merge.base_line(i),
                Part::Ours => merge.ours_line(i),
                Part::Theirs => merge.theirs_line(i),
            })
            .collect()
    };
    for region in merge.regions() {
        let (chunk, conflict) = match region.resolution() {
            MergeResolution::Unchanged | MergeResolution::Ours | MergeResolution::Both => {
                (join(Part::Ours, region.ours_range()), false)
            }
            MergeResolution::Theirs => (join(Part::Theirs, region.theirs_range()), false),
            // `Conflict` (and any resolution a future `similar` adds) goes to `prefer`.
            _ => match prefer {
                Side::Local => (join(Part::Ours, region.ours_range()), true),
                Side::Remote => (join(Part::Theirs, region.theirs_range()), true),
            },
        };
        let n = chunk.matches('\n').count();
        if conflict {
            let render = |part: Part, range: Range<usize>| {
                (!range.is_empty()).then(|| super::short(join(part, range).trim_end_matches('\n')))
            };
            conflicts.push(Conflict {
                path: region_path(out_lines, n),
                local: render(Part::Ours, region.ours_range()),
                remote: render(Part::Theirs, region.theirs_range()),
                base: render(Part::Base, region.base_range()),
            });
        }
        out_lines += n;
        out.push_str(&chunk);
    }

    // Trailing newline: a boolean three-way merge (take whichever side changed it).
    let ends_with_newline = if nl.ends_with_newline == nb.ends_with_newline {
        nr.ends_with_newline
    } else {
        nl.ends_with_newline
    };
    if !ends_with_newline && out.ends_with('\n') {
        out.pop();
    }
    if crlf_style(l).or_else(|| crlf_style(r)).unwrap_or(false) {
        out = out.replace('\n', "\r\n");
    }
    Ok(MergeOutcome {
        bytes: out.into_bytes(),
        conflicts,
    })
}

/// 1-based line numbers of a region in the merged result.
fn region_path(before: usize, n: usize) -> String {
    match n {
        0 if before == 0 => "at the start (lines removed)".to_string(),
        0 => format!("after line {before} (lines removed)"),
        1 => format!("line {}", before + 1),
        _ => format!("lines {}-{}", before + 1, before + n),
    }
}

#[cfg(test)]
mod tests {
    use crate::merge::{Conflict, Input, MergeError, MergeKind, Side, merge};

    fn mt(base: Option<&str>, local: &str, remote: &str, prefer: Side) -> (String, Vec<Conflict>) {
        let m = merge(
            MergeKind::Text,
            base.map(str::as_bytes),
            local.as_bytes(),
            remote.as_bytes(),
            prefer,
        )
        .unwrap();
        (String::from_utf8(m.bytes).unwrap(), m.conflicts)
    }

    #[test]
    fn non_overlapping_changes_merge_cleanly() {
        let base = "one\ntwo\nthree\nfour\nfive\n";
        let local = "ONE\ntwo\nthree\nfour\nfive\n";
        let remote = "one\ntwo\nthree\nfour\nFIVE\nsix\n";
        let (out, c) = mt(Some(base), local, remote, Side::Local);
        assert!(c.is_empty());
        assert_eq!(out, "ONE\ntwo\nthree\nfour\nFIVE\nsix\n");
    }

    #[test]
    fn overlapping_changes_resolved_per_region_without_markers() {
        let base = "a\nb\nc\nd\ne\nf\ng\n";
        let local = "a\nB1\nc\nd\ne\nF1\ng\n";
        let remote = "a\nB2\nc\nd\ne\nF2\ng\n";
        let (out, c) = mt(Some(base), local, remote, Side::Remote);
        assert_eq!(out, remote);
        assert!(!out.contains("<<<<<<<"));
        assert_eq!(
            c,
            vec![
                Conflict {
                    path: "line 2".into(),
                    local: Some("B1".into()),
                    remote: Some("B2".into()),
                    base: Some("b".into())
                },
                Conflict {
                    path: "line 6".into(),
                    local: Some("F1".into()),
                    remote: Some("F2".into()),
                    base: Some("f".into())
                },
            ]
        );
        let (out, c) = mt(Some(base), local, remote, Side::Local);
        assert_eq!(out, local);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn conflict_and_clean_change_mix() {
        let base = "a\nb\nc\nd\ne\n";
        let local = "a\nLOCAL\nc\nd\ne\n";
        let remote = "a\nREMOTE\nREMOTE2\nc\nd\nE\n";
        let (out, c) = mt(Some(base), local, remote, Side::Remote);
        assert_eq!(out, "a\nREMOTE\nREMOTE2\nc\nd\nE\n");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].path, "lines 2-3");
        assert_eq!(c[0].remote.as_deref(), Some("REMOTE\nREMOTE2"));
        let (out, _) = mt(Some(base), local, remote, Side::Local);
        assert_eq!(out, "a\nLOCAL\nc\nd\nE\n");
    }

    #[test]
    fn delete_vs_edit_region() {
        let base = "a\nb\nc\n";
        let (out, c) = mt(Some(base), "a\nc\n", "a\nB\nc\n", Side::Local);
        assert_eq!(out, "a\nc\n");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].local, None);
        assert_eq!(c[0].path, "after line 1 (lines removed)");
        let (out, _) = mt(Some(base), "a\nc\n", "a\nB\nc\n", Side::Remote);
        assert_eq!(out, "a\nB\nc\n");
    }

    #[test]
    fn both_same_change_is_clean() {
        let (out, c) = mt(Some("a\nb\n"), "a\nX\n", "a\nX\n", Side::Remote);
        assert!(c.is_empty());
        assert_eq!(out, "a\nX\n");
    }

    #[test]
    fn crlf_local_style_is_preserved() {
        let base = "a\nb\nc\n";
        let local = "A\r\nb\r\nc\r\n";
        let remote = "a\nb\nC\n";
        let (out, c) = mt(Some(base), local, remote, Side::Local);
        assert!(c.is_empty(), "line endings alone must not conflict");
        assert_eq!(out, "A\r\nb\r\nC\r\n");
        let (out, _) = mt(Some(base), "a\nB\nc\n", "a\r\nb\r\nc\r\nd\r\n", Side::Local);
        assert_eq!(out, "a\nB\nc\nd\n");
    }

    #[test]
    fn missing_trailing_newline() {
        // Remote appends to a file without final newline; local edits the first line.
        let (out, c) = mt(Some("a\nb"), "A\nb", "a\nb\nc", Side::Local);
        assert!(c.is_empty(), "{c:?}");
        assert_eq!(out, "A\nb\nc");
        // One side adds the final newline.
        let (out, c) = mt(Some("a\nb"), "a\nb\n", "X\nb", Side::Local);
        assert!(c.is_empty());
        assert_eq!(out, "X\nb\n");
    }

    #[test]
    fn empty_files_and_never_synced() {
        assert_eq!(
            mt(None, "", "hello\n", Side::Local),
            ("hello\n".into(), vec![])
        );
        assert_eq!(
            mt(None, "hello\n", "", Side::Local),
            ("hello\n".into(), vec![])
        );
        assert_eq!(
            mt(Some("x\n"), "", "x\n", Side::Remote),
            (String::new(), vec![])
        );
        let (out, c) = mt(None, "mine\n", "theirs\n", Side::Remote);
        assert_eq!(out, "theirs\n");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].base, None);
        assert_eq!(mt(Some(""), "", "", Side::Remote), (String::new(), vec![]));
    }

    #[test]
    fn unicode_lines() {
        let base = "héllo\n世界\n🦀\n";
        let (out, c) = mt(
            Some(base),
            "héllo wörld\n世界\n🦀\n",
            "héllo\n世界\n🦀🦀\n",
            Side::Local,
        );
        assert!(c.is_empty());
        assert_eq!(out, "héllo wörld\n世界\n🦀🦀\n");
    }

    #[test]
    fn conflict_marker_like_content_is_just_text() {
        let base = "<<<<<<< ours\n=======\n>>>>>>> theirs\n";
        let (out, c) = mt(
            Some(base),
            "x\n=======\n>>>>>>> theirs\n",
            "<<<<<<< ours\n=======\ny\n",
            Side::Local,
        );
        assert!(c.is_empty());
        assert_eq!(out, "x\n=======\ny\n");
    }

    #[test]
    fn not_utf8_is_an_error() {
        let e = merge(MergeKind::Text, Some(&[0xff]), b"a", b"b", Side::Local).unwrap_err();
        assert!(matches!(
            e,
            MergeError::NotUtf8 {
                side: Input::Base,
                ..
            }
        ));
    }
}
