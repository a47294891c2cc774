//! The sync categories: the first component of every item key, and the names of the config's
//! `sync` switches. Each name is spelled here once.

use std::fmt;

/// A sync category: the first component of every item key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Config,
    State,
    Credentials,
    Sessions,
    Messages,
    Projects,
    Todos,
}

impl Category {
    pub const ALL: [Category; 7] = [
        Category::Config,
        Category::State,
        Category::Credentials,
        Category::Sessions,
        Category::Messages,
        Category::Projects,
        Category::Todos,
    ];

    /// The name used in keys and in the config's `sync` section.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Config => "config",
            Category::State => "state",
            Category::Credentials => "credentials",
            Category::Sessions => "sessions",
            Category::Messages => "messages",
            Category::Projects => "projects",
            Category::Todos => "todos",
        }
    }

    /// The inverse of [`Category::as_str`] (exact, lower case).
    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The category an item key belongs to (its first path component).
    pub fn of_key(key: &str) -> Option<Category> {
        Category::parse(key.split('/').next()?)
    }
}

impl serde::Serialize for Category {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::parse(s).ok_or_else(|| format!("unknown category {s:?}"))
    }
}
