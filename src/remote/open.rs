//! Opening the remote a configuration names: a folder when `remote` is a path; GitHub when `remote`
//! is `github`, or unset and a token is found; else the default local folder.

use crate::config::{Config, RemoteSetting};
use crate::paths::{EnvSnapshot, Paths};
use crate::token_store::find_token;

use super::git::{GitRemote, GitUrl};
use super::github::{GithubRemote, GithubSettings};
use super::local::LocalRemote;
use super::{Remote, RemoteError};

/// The remote this configuration selects (blocking: never call from an async task).
pub fn open_remote(config: &Config, paths: &Paths, env: &EnvSnapshot) -> Result<Box<dyn Remote>, RemoteError> {
    let path = match &config.remote {
        RemoteSetting::Local(p) => p.clone(),
        RemoteSetting::Git(u) => return Ok(Box::new(open_git(config, paths, u)?)),
        RemoteSetting::Github | RemoteSetting::Auto => match find_token(config, env, paths) {
            Some((token, _)) => return Ok(Box::new(open_github(config, paths, env, token.expose())?)),
            None if config.remote == RemoteSetting::Github => {
                return Err(RemoteError::BadToken(
                    "`remote` is \"github\" but no GitHub token was found: run `oc-sync login`, or set GITHUB_TOKEN (or GH_TOKEN, or `token` in the config)".into(),
                ));
            }
            None => {
                let parent = paths.default_local_remote.parent().expect("data dir");
                std::fs::create_dir_all(parent).map_err(|e| RemoteError::io(format!("cannot create {}", parent.display()), e))?;
                paths.default_local_remote.clone()
            }
        },
    };
    Ok(Box::new(LocalRemote::open(path)?.with_index_file(paths.folder_remote_index_file())))
}

/// The git remote at `url` for this configuration.
pub fn open_git(config: &Config, paths: &Paths, url: &str) -> Result<GitRemote, RemoteError> {
    let url = GitUrl::parse(url).map_err(RemoteError::Denied)?;
    let branch = config.branch.clone().unwrap_or_else(|| "main".into());
    let (mirror, index) = (paths.git_mirror_dir(url.as_str(), &branch), paths.git_mirror_index_file(url.as_str(), &branch));
    GitRemote::open(url, &branch, mirror, Some(index))
}

/// The GitHub remote for this configuration (blocking: never call from an async task).
pub fn open_github(config: &Config, paths: &Paths, env: &EnvSnapshot, token: &str) -> Result<GithubRemote, RemoteError> {
    let settings = GithubSettings {
        api_url: config.github_api_url.clone(),
        token: token.to_owned(),
        owner: config.repo_owner.clone(),
        repo: config.repo_name.clone(),
        branch: config.branch.clone(),
        cache_file: Some(paths.github_cache_file()),
        data_dir: Some(paths.data_dir.clone()),
        retry_unit: super::github::http::retry_unit(env),
    };
    GithubRemote::open(&settings)
}
