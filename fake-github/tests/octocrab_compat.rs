//! The fake's answers must deserialize into octocrab's (strict) models.

use fake_github::{FakeGithub, FakeOptions};
use octocrab::models::repos::CommitAuthor;
use octocrab::models::{self, CreateTreeEntry};
use octocrab::params::repos::Reference;

fn client(gh: &FakeGithub, prefix: &str) -> octocrab::Octocrab {
    octocrab::Octocrab::builder()
        .base_uri(format!("{}{prefix}", gh.url))
        .unwrap()
        .personal_token(gh.token().to_string())
        .build()
        .unwrap()
}

fn status_of(e: &octocrab::Error) -> (u16, String) {
    match e {
        octocrab::Error::GitHub { source, .. } => (source.status_code.as_u16(), source.message.clone()),
        other => panic!("unexpected error {other:?}"),
    }
}

#[tokio::test]
async fn octocrab_round_trip() {
    let gh = FakeGithub::start(FakeOptions::default()).await.unwrap();
    let oc = client(&gh, "");

    let me = oc.current().user().await.unwrap();
    assert_eq!(me.login, "octo-user");
    let repo: models::Repository = oc.current().create_repo("sync").private(true).auto_init(true).send().await.unwrap();
    assert_eq!(repo.private, Some(true));
    assert_eq!(repo.default_branch.as_deref(), Some("main"));
    let repo = oc.repos("octo-user", "sync").get().await.unwrap();
    assert_eq!(repo.full_name.as_deref(), Some("octo-user/sync"));
    assert_eq!(repo.owner.as_ref().unwrap().login, "octo-user");

    let git = oc.git("octo-user", "sync");
    let main = Reference::Branch("main".into());
    let head = git.get_ref(&main).await.unwrap();
    let head_sha = match head.object {
        models::repos::Object::Commit { sha, .. } => sha,
        other => panic!("{other:?}"),
    };
    let head_commit = git.get_commit(head_sha.clone()).await.unwrap();
    assert_eq!(head_commit.message, "Initial commit");

    let blob = git.create_blob("aGk=").encoding("base64").send().await.unwrap();
    let got = git.get_blob(blob.sha.clone()).await.unwrap();
    assert_eq!(got.size, 2);

    let tree = git
        .create_tree(vec![
            CreateTreeEntry::new("dir/a.txt", "100644", "blob").with_content("a\n"),
            CreateTreeEntry::new("b.bin", "100644", "blob").with_sha(blob.sha.clone()),
        ])
        .base_tree(head_commit.tree.sha.clone())
        .send()
        .await
        .unwrap();
    let listed = git.get_tree(tree.sha.clone()).recursive(true).send().await.unwrap();
    assert_eq!(listed.tree.len(), 4);

    let commit = git
        .create_commit("sync from test", tree.sha.clone())
        .parents(vec![head_sha.clone()])
        .author(CommitAuthor { name: "Tester".into(), email: Some("t@example.com".into()), date: None })
        .send()
        .await
        .unwrap();
    assert_eq!(commit.parents.len(), 1);
    let updated = git.update_ref(&main, commit.sha.clone()).force(false).send().await.unwrap();
    assert_eq!(updated.ref_field, "refs/heads/main");

    // Not a fast forward.
    let sibling = git.create_commit("sibling", tree.sha.clone()).parents(vec![head_sha.clone()]).send().await.unwrap();
    let err = git.update_ref(&main, sibling.sha.clone()).force(false).send().await.unwrap_err();
    assert_eq!(status_of(&err), (422, "Update is not a fast forward".into()));

    git.create_ref(&Reference::Branch("other".into()), sibling.sha.clone()).await.unwrap();

    let cmp = oc.repos("octo-user", "sync").compare_commits(head_sha.clone(), "main").send().await.unwrap();
    assert_eq!(cmp.ahead_by, 1);

    let tarball = oc.repos("octo-user", "sync").download_tarball("main".to_string()).await.unwrap();
    assert_eq!(tarball.status().as_u16(), 200);

    let rl = oc.ratelimit().get().await.unwrap();
    assert!(rl.resources.core.remaining < 5000);

    // GHES-style base URI.
    let ghes = client(&gh, "/api/v3");
    assert_eq!(ghes.current().user().await.unwrap().login, "octo-user");

    // Empty repo and bad credentials.
    gh.add_repo("octo-user", "empty", true, false);
    let err = oc.git("octo-user", "empty").get_ref(&main).await.unwrap_err();
    assert_eq!(status_of(&err), (409, "Git Repository is empty.".into()));
    let bad = octocrab::Octocrab::builder().base_uri(gh.url.clone()).unwrap().personal_token("nope".to_string()).build().unwrap();
    let err = bad.current().user().await.unwrap_err();
    assert_eq!(status_of(&err), (401, "Bad credentials".into()));

    gh.stop().await;
}

#[tokio::test]
async fn octocrab_create_and_update_file() {
    let gh = FakeGithub::start(FakeOptions::default()).await.unwrap();
    let oc = client(&gh, "");
    oc.current().create_repo("blank").private(true).send().await.unwrap();
    let repo = oc.repos("octo-user", "blank");
    let created = repo.create_file("a/b.txt", "first", "one\n").branch("main").send().await.unwrap();
    assert_eq!(created.content.path, "a/b.txt");
    assert_eq!(created.content.r#type, "file");
    assert_eq!(created.commit.author.as_ref().map(|a| a.name.as_str()), Some("octo-user"));
    let head = oc.git("octo-user", "blank").get_ref(&Reference::Branch("main".into())).await.unwrap();
    match head.object {
        models::repos::Object::Commit { sha, .. } => assert_eq!(Some(sha), created.commit.sha.clone()),
        other => panic!("{other:?}"),
    }
    let err = repo.create_file("a/b.txt", "again", "x").send().await.unwrap_err();
    assert_eq!(status_of(&err).0, 422);
    let updated = repo.update_file("a/b.txt", "second", "two\n", created.content.sha.clone()).send().await.unwrap();
    assert_ne!(updated.content.sha, created.content.sha);
    let err = repo.update_file("a/b.txt", "third", "3", created.content.sha.clone()).send().await.unwrap_err();
    assert_eq!(status_of(&err), (409, format!("a/b.txt does not match {}", created.content.sha)));
    gh.stop().await;
}
