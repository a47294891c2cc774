use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::merge::MergeKind;

fn put(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes).unwrap();
}

fn config_src(root: &Path, include: &[&str], exclude: &[&str]) -> FileSource {
    let opts = FileSourceOptions {
        include: include.iter().map(|s| s.to_string()).collect(),
        exclude: exclude.iter().map(|s| s.to_string()).collect(),
        ..FileSourceOptions::default()
    };
    FileSource::new(Category::Config, root, opts).unwrap()
}

fn keys(src: &FileSource) -> Vec<String> {
    src.list().unwrap().into_iter().map(|m| m.key).collect()
}

#[test]
fn category_names_roundtrip() {
    for c in Category::ALL {
        assert_eq!(Category::parse(c.as_str()), Some(c));
        assert_eq!(c.as_str().parse::<Category>().unwrap(), c);
    }
    assert_eq!(Category::parse("Config"), None);
    assert_eq!(Category::of_key("state/kv.json"), Some(Category::State));
}

#[test]
fn config_lists_exactly_the_right_files() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    for f in [
        "opencode.json",
        "opencode.jsonc",
        "config.json",
        "tui.json",
        "AGENTS.md",
        "agent/a.md",
        "agents/b.md",
        "agents/nested/deep/c.md",
        "command/x.md",
        "commands/sub/y.md",
        "mode/m.md",
        "modes/n.md",
        "tool/t.ts",
        "tools/u.js",
        "plugin/p.js",
        "plugins/q.ts",
        "skill/s1/SKILL.md",
        "skills/s2/SKILL.md",
        "skills/s2/scripts/run.py",
        "skills/s2/data.bin",
        "themes/dark.json",
    ] {
        put(r, f, b"x");
    }
    for f in [
        "README.md",
        "other.json",
        "agents/notes.txt",
        "modes/deep/z.md",
        "tools/sub/v.ts",
        "tools/readme.md",
        "themes/a/b.json",
        "themes/x.md",
        "node_modules/pkg/index.js",
        "plugins/node_modules/x.js",
        "package.json",
        "package-lock.json",
        "bun.lock",
        ".gitignore",
        "skills/s2/package.json",
        "agents/a.md~",
        "agents/.#a.md",
        "agents/a.md.swp",
        "agents/a.md.swo",
        "agents/.DS_Store",
        "agents/a.tmp",
        ".opencode.json.oc-sync-tmp-abc123",
        "agents/.a.md.oc-sync-tmp-ff",
        "opencode-sync.json",
        "opencode-sync.jsonc",
        "opencode-sync.overrides.jsonc",
        "opencode-sync.json.bak",
        ".git/config",
        ".git/agents/x.md",
        "agents/.hidden/h.md",
        "skills/.git/HEAD",
    ] {
        put(r, f, b"x");
    }
    let mut want = vec![
        "config/AGENTS.md",
        "config/agent/a.md",
        "config/agents/b.md",
        "config/agents/nested/deep/c.md",
        "config/command/x.md",
        "config/commands/sub/y.md",
        "config/config.json",
        "config/mode/m.md",
        "config/modes/n.md",
        "config/opencode.json",
        "config/opencode.jsonc",
        "config/plugin/p.js",
        "config/plugins/q.ts",
        "config/skill/s1/SKILL.md",
        "config/skills/s2/SKILL.md",
        "config/skills/s2/data.bin",
        "config/skills/s2/scripts/run.py",
        "config/themes/dark.json",
        "config/tool/t.ts",
        "config/tools/u.js",
        "config/tui.json",
    ];
    want.sort();
    assert_eq!(keys(&config_src(r, &[], &[])), want);
}

#[test]
fn state_lists_only_known_files() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    for f in [
        "model.json",
        "prompt-history.jsonl",
        "prompt-stash.jsonl",
        "frecency.jsonl",
        "kv.json",
    ] {
        put(r, f, b"{}");
    }
    for f in [
        "session.json",
        "plugin-meta.json",
        "locks/a.lock",
        "sub/model.json",
        "agents/a.md",
        "opencode.json",
    ] {
        put(r, f, b"{}");
    }
    let src = FileSource::new(Category::State, r, FileSourceOptions::default()).unwrap();
    assert_eq!(
        keys(&src),
        [
            "state/frecency.jsonl",
            "state/kv.json",
            "state/model.json",
            "state/prompt-history.jsonl",
            "state/prompt-stash.jsonl"
        ]
    );
    // Includes are a config-only feature; excludes apply (by relative path or full key).
    let opts = FileSourceOptions {
        include: vec!["session.json".into()],
        exclude: vec!["state/kv.json".into(), "frecency.jsonl".into()],
        ..Default::default()
    };
    let src = FileSource::new(Category::State, r, opts).unwrap();
    assert_eq!(
        keys(&src),
        [
            "state/model.json",
            "state/prompt-history.jsonl",
            "state/prompt-stash.jsonl"
        ]
    );
}

#[test]
fn missing_root_lists_nothing() {
    let t = tempfile::tempdir().unwrap();
    let src = config_src(&t.path().join("nope"), &[], &[]);
    assert!(src.list().unwrap().is_empty());
    assert_eq!(src.read("config/opencode.json").unwrap(), None);
}

#[test]
fn include_and_exclude_globs() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    for f in [
        "agents/public.md",
        "agents/private-a.md",
        "agents/sub/private-b.md",
        "extra/notes.txt",
        "extra/deep/more.txt",
        "snippets.yaml",
        "node_modules/x/notes.txt",
        "extra/package.json",
        "opencode.json",
        ".secret/notes.txt",
    ] {
        put(r, f, b"x");
    }
    let src = config_src(
        r,
        &["extra/**", "*.yaml", "**/notes.txt", "package.json"],
        &["agents/**/private-*.md", "deep/"],
    );
    assert_eq!(
        keys(&src),
        [
            "config/agents/public.md",
            "config/extra/deep/more.txt",
            "config/extra/notes.txt",
            "config/opencode.json",
            "config/snippets.yaml"
        ]
    );
    // A slash-less exclude matches the file name at any depth; exclude wins over include.
    let src = config_src(r, &["extra/**"], &["notes.txt", "agents/"]);
    assert_eq!(
        keys(&src),
        ["config/extra/deep/more.txt", "config/opencode.json"]
    );
    assert!(!src.is_syncable(Path::new("agents/public.md")));
    // Bad globs are reported.
    let err = FileSource::new(
        Category::Config,
        r,
        FileSourceOptions {
            include: vec!["a[".into()],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            SourceError::Glob {
                which: "include",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn own_config_file_inside_root_is_excluded() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    put(r, "my-sync.json", b"{}");
    put(r, "my-sync.json.bak", b"{}");
    put(r, "keep.json", b"{}");
    let opts = FileSourceOptions {
        include: vec!["*.json*".into()],
        own_files: vec![r.join("my-sync.json")],
        ..Default::default()
    };
    let src = FileSource::new(Category::Config, r, opts).unwrap();
    assert_eq!(keys(&src), ["config/keep.json"]);
    assert!(src.write("config/my-sync.json", b"{}").is_err());
}

#[test]
fn from_paths_and_config() {
    let t = tempfile::tempdir().unwrap();
    let env = crate::paths::EnvSnapshot::new(t.path(), Vec::<(String, String)>::new());
    let paths = crate::paths::Paths::resolve(&env).unwrap();
    let cfg = crate::config::Config {
        exclude: vec!["tui.json".into()],
        ..Default::default()
    };
    put(&paths.opencode_config, "opencode.json", b"{}");
    put(&paths.opencode_config, "tui.json", b"{}");
    put(&paths.opencode_config, "opencode-sync.json", b"{}");
    put(&paths.opencode_state, "kv.json", b"{}");
    assert_eq!(
        keys(&FileSource::config(&paths, &cfg).unwrap()),
        ["config/opencode.json"]
    );
    let state = FileSource::state(&paths, &cfg).unwrap();
    assert_eq!(state.category(), Category::State);
    assert_eq!(keys(&state), ["state/kv.json"]);
}

#[cfg(unix)]
#[test]
fn symlinks_are_skipped_and_refused() {
    use std::os::unix::fs::symlink;
    let t = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    put(outside.path(), "evil.md", b"outside");
    put(outside.path(), "dir/x.md", b"outside");
    let r = t.path();
    put(r, "agents/ok.md", b"ok");
    symlink(outside.path().join("evil.md"), r.join("agents/link.md")).unwrap();
    symlink(outside.path().join("dir"), r.join("commands")).unwrap();
    symlink(outside.path().join("dir"), r.join("agents/sub")).unwrap();
    symlink(outside.path().join("evil.md"), r.join("opencode.json")).unwrap();
    symlink(outside.path().join("evil.md"), r.join("unrelated.md")).unwrap();
    let src = config_src(r, &[], &[]);
    let listing = src.scan().unwrap();
    assert_eq!(
        listing
            .items
            .iter()
            .map(|m| m.key.as_str())
            .collect::<Vec<_>>(),
        ["config/agents/ok.md"]
    );
    let skipped: Vec<&str> = listing.skipped.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        skipped,
        [
            "config/agents/link.md",
            "config/agents/sub",
            "config/commands",
            "config/opencode.json"
        ]
    );
    assert!(
        listing
            .skipped
            .iter()
            .all(|s| s.reason.contains("symbolic link"))
    );

    // Writing, reading or deleting through any symlink fails and leaves the target alone.
    for key in [
        "config/agents/link.md",
        "config/commands/x.md",
        "config/agents/sub/x.md",
        "config/opencode.json",
    ] {
        assert!(
            matches!(src.write(key, b"pwned"), Err(SourceError::Symlink { .. })),
            "{key}"
        );
        assert!(
            matches!(src.read(key), Err(SourceError::Symlink { .. })),
            "{key}"
        );
        assert!(
            matches!(src.delete(key), Err(SourceError::Symlink { .. })),
            "{key}"
        );
    }
    assert!(matches!(
        src.write("config/commands/new/y.md", b"pwned"),
        Err(SourceError::Symlink { .. })
    ));
    assert_eq!(
        fs::read(outside.path().join("evil.md")).unwrap(),
        b"outside"
    );
    assert_eq!(
        fs::read(outside.path().join("dir/x.md")).unwrap(),
        b"outside"
    );
    assert!(!outside.path().join("dir/new").exists());
    // A symlinked root itself is fine (dotfile managers do that).
    let linked_root = outside.path().join("root-link");
    symlink(r, &linked_root).unwrap();
    assert_eq!(
        keys(&config_src(&linked_root, &[], &[])),
        ["config/agents/ok.md"]
    );
}

#[test]
fn size_limit_skips_and_refuses() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    put(r, "opencode.json", &[b'1'; 11]);
    put(r, "tui.json", &[b'1'; 10]);
    let opts = FileSourceOptions {
        max_file_size: 10,
        ..Default::default()
    };
    let src = FileSource::new(Category::Config, r, opts).unwrap();
    let listing = src.scan().unwrap();
    assert_eq!(
        listing
            .items
            .iter()
            .map(|m| m.key.as_str())
            .collect::<Vec<_>>(),
        ["config/tui.json"]
    );
    assert_eq!(listing.skipped.len(), 1);
    assert!(
        listing.skipped[0].reason.contains("limit"),
        "{:?}",
        listing.skipped
    );
    assert!(matches!(
        src.read("config/opencode.json"),
        Err(SourceError::TooLarge { .. })
    ));
    assert!(matches!(
        src.write("config/tui.json", &[b'1'; 11]),
        Err(SourceError::TooLarge { .. })
    ));
    assert_eq!(
        FileSource::new(Category::Config, r, Default::default())
            .unwrap()
            .max_file_size(),
        DEFAULT_MAX_FILE_SIZE
    );
}

#[test]
fn kinds_by_extension_and_content() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    put(r, "opencode.json", b"{}");
    put(r, "opencode.jsonc", b"// c\n{}");
    put(r, "AGENTS.md", b"# hi");
    put(r, "tools/a.ts", b"export {}");
    put(r, "skills/s/notes.txt", b"t");
    put(r, "skills/s/x.yaml", b"a: 1");
    put(r, "skills/s/x.toml", b"a = 1");
    put(r, "skills/s/log.jsonl", b"{}\n");
    put(r, "skills/s/noext", b"plain");
    put(r, "skills/s/img.png", &[0x89, b'P', b'N', b'G', 0xff, 0x00]);
    put(r, "themes/bad.json", &[b'{', 0xff, b'}']);
    let got: Vec<(String, MergeKind)> = config_src(r, &[], &[])
        .list()
        .unwrap()
        .into_iter()
        .map(|m| (m.key, m.kind))
        .collect();
    let want = [
        ("config/AGENTS.md", MergeKind::Text),
        ("config/opencode.json", MergeKind::Jsonc),
        ("config/opencode.jsonc", MergeKind::Jsonc),
        ("config/skills/s/img.png", MergeKind::Binary),
        ("config/skills/s/log.jsonl", MergeKind::Jsonl),
        ("config/skills/s/noext", MergeKind::Text),
        ("config/skills/s/notes.txt", MergeKind::Text),
        ("config/skills/s/x.toml", MergeKind::Text),
        ("config/skills/s/x.yaml", MergeKind::Text),
        ("config/themes/bad.json", MergeKind::Binary),
        ("config/tools/a.ts", MergeKind::Text),
    ];
    assert_eq!(got, want.map(|(k, m)| (k.to_string(), m)));

    // State files are written by OpenCode with JSON.stringify: plain JSON; JSONL stays JSONL.
    let s = tempfile::tempdir().unwrap();
    put(s.path(), "model.json", b"{}");
    put(s.path(), "prompt-history.jsonl", b"{}\n");
    let state = FileSource::new(Category::State, s.path(), FileSourceOptions::default()).unwrap();
    let kinds: Vec<(String, MergeKind)> = state.list().unwrap().into_iter().map(|m| (m.key, m.kind)).collect();
    assert_eq!(
        kinds,
        vec![("state/model.json".to_string(), MergeKind::Json), ("state/prompt-history.jsonl".to_string(), MergeKind::Jsonl)]
    );
}

#[test]
fn write_read_roundtrip_keeps_mode() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let src = config_src(r, &[], &[]);
    src.write("config/agents/deep/new.md", b"hello").unwrap();
    let item = src.read("config/agents/deep/new.md").unwrap().unwrap();
    assert_eq!(item.bytes, b"hello");
    assert_eq!(item.meta.size, 5);
    assert_eq!(item.meta.category, Category::Config);
    assert_eq!(item.meta.kind, MergeKind::Text);
    assert!(item.meta.modified_ms > 0);
    assert_eq!(src.list().unwrap(), vec![item.meta.clone()]);
    assert_eq!(src.read("config/agents/other.md").unwrap(), None);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let p = r.join("agents/deep/new.md");
        assert_eq!(item.meta.mode, Some(0o644));
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        src.write("config/agents/deep/new.md", b"again").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            src.read("config/agents/deep/new.md")
                .unwrap()
                .unwrap()
                .meta
                .mode,
            Some(0o600)
        );
    }
    assert_eq!(
        fs::read(r.join("agents/deep/new.md")).unwrap(),
        if cfg!(unix) { b"again" } else { b"hello" }
    );
    // No temp files left behind.
    assert_eq!(fs::read_dir(r.join("agents/deep")).unwrap().count(), 1);
}

#[test]
fn malicious_keys_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let base = t.path();
    let r = base.join("opencode");
    fs::create_dir_all(&r).unwrap();
    let src = config_src(&r, &[], &[]);
    for key in [
        "config/../x",
        "config/../../.bashrc",
        "config/agents/../../x.md",
        "/etc/passwd",
        "config//etc/passwd",
        "config/./opencode.json",
        "config/node_modules/a.js",
        "config/plugins/node_modules/a.js",
        "config/package.json",
        "config/.git/config",
        "config/agents/.x.md",
        "config/opencode-sync.json",
        "config/agents/a.md~",
        "config/agents\\a.md",
        "config/agent s/a.md",
        "config/README.md",
        "config",
        "config/",
        "",
        "state/session.json",
        "state/kv.json",
        "kv.json",
        "sessions/x.json",
        "config/tools/sub/a.ts",
        "config/agents/a.md\0",
    ] {
        let w = src.write(key, b"x");
        assert!(
            matches!(w, Err(SourceError::KeyRefused { .. })),
            "{key:?}: {w:?}"
        );
        assert!(
            matches!(src.read(key), Err(SourceError::KeyRefused { .. })),
            "{key:?}"
        );
        assert!(
            matches!(src.delete(key), Err(SourceError::KeyRefused { .. })),
            "{key:?}"
        );
    }
    let state = FileSource::new(Category::State, &r, Default::default()).unwrap();
    for key in [
        "config/opencode.json",
        "state/session.json",
        "state/plugin-meta.json",
        "state/locks/x",
        "state/../kv.json",
    ] {
        assert!(
            matches!(state.write(key, b"x"), Err(SourceError::KeyRefused { .. })),
            "{key:?}"
        );
    }
    state.write("state/kv.json", b"{}").unwrap();
    // Nothing escaped the root.
    let outside: Vec<_> = fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, vec![std::ffi::OsString::from("opencode")]);
    let inside: Vec<_> = fs::read_dir(&r)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(inside, vec![std::ffi::OsString::from("kv.json")]);
}

#[test]
fn delete_prunes_empty_dirs() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let src = config_src(r, &[], &[]);
    src.write("config/skills/s/scripts/a.sh", b"x").unwrap();
    src.write("config/skills/s/SKILL.md", b"x").unwrap();
    src.delete("config/skills/s/scripts/a.sh").unwrap();
    assert!(!r.join("skills/s/scripts").exists());
    assert!(r.join("skills/s/SKILL.md").exists());
    src.delete("config/skills/s/SKILL.md").unwrap();
    assert!(!r.join("skills").exists());
    assert!(r.exists(), "the root is never removed");
    // Deleting what is absent is fine.
    src.delete("config/skills/s/SKILL.md").unwrap();
    // A folder still holding unsynced files stays.
    put(r, "agents/.notes", b"keep");
    src.write("config/agents/a.md", b"x").unwrap();
    src.delete("config/agents/a.md").unwrap();
    assert!(r.join("agents/.notes").exists());
}

#[test]
fn not_a_file_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    fs::create_dir_all(r.join("opencode.json")).unwrap();
    put(r, "agents", b"file where a folder should be");
    let src = config_src(r, &[], &[]);
    assert!(matches!(
        src.write("config/opencode.json", b"{}"),
        Err(SourceError::NotAFile { .. })
    ));
    assert!(matches!(
        src.write("config/agents/a.md", b"x"),
        Err(SourceError::NotAFile { .. })
    ));
    assert!(src.list().unwrap().is_empty());
}

#[test]
fn unicode_names() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    put(r, "agents/révision-日本語.md", "é".as_bytes());
    let src = config_src(r, &[], &[]);
    assert_eq!(keys(&src), ["config/agents/révision-日本語.md"]);
    src.write("config/commands/ünï/😀.md", b"x").unwrap();
    assert_eq!(
        src.read("config/commands/ünï/😀.md")
            .unwrap()
            .unwrap()
            .bytes,
        b"x"
    );
    assert!(src.is_syncable(Path::new("commands/ünï/😀.md")));
}

#[test]
fn is_syncable_by_name() {
    let t = tempfile::tempdir().unwrap();
    let src = config_src(t.path(), &["extra/*.txt"], &["agents/secret.md"]);
    let yes = [
        "opencode.json",
        "agents/a/b.md",
        "skills/x/y/z",
        "extra/a.txt",
        "themes/t.json",
    ];
    let no = [
        "",
        "../opencode.json",
        "/opencode.json",
        "agents/secret.md",
        "extra/sub/a.txt",
        "node_modules/a.md",
        ".git/x",
        "agents/x.md.swp",
        "opencode-sync.jsonc",
        "package.json",
        "agents",
    ];
    for p in yes {
        assert!(src.is_syncable(Path::new(p)), "{p}");
    }
    for p in no {
        assert!(!src.is_syncable(Path::new(p)), "{p}");
    }
    let abs: PathBuf = t.path().join("opencode.json");
    assert!(!src.is_syncable(&abs));
}
