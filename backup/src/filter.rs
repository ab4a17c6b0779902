//! `--exclude` (create) and `--include` (restore) patterns, matched the way restic users
//! expect: `*` and `?` stay within one path component and `**` crosses components; a pattern
//! matches a path when it matches the whole path or any trailing part of it that starts at a
//! component. So `*.tmp` and `cache` match at any depth, `docs/*.md` matches the markdown of
//! any `docs` directory, and `/home/me/big.iso` matches that one file (create also tries the
//! absolute path).

use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::Error;

pub struct PathFilter {
    set: GlobSet,
    patterns: Vec<String>,
}

impl PathFilter {
    /// The patterns given with `flag` (named in the error when one is not a valid glob).
    pub fn new(patterns: &[String], flag: &str) -> Result<PathFilter, Error> {
        let mut set = GlobSetBuilder::new();
        for p in patterns {
            // `dir/` means the directory `dir`: paths are matched without a trailing slash.
            let trimmed = p.trim_end_matches('/');
            let glob = GlobBuilder::new(if trimmed.is_empty() { p } else { trimmed })
                .literal_separator(true)
                .build()
                .map_err(|e| Error::Usage(format!("{flag} {p}: {e}")))?;
            set.add(glob);
        }
        Ok(PathFilter {
            set: set.build().map_err(|e| Error::Usage(e.to_string()))?,
            patterns: patterns.to_vec(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as given, for messages.
    pub fn patterns(&self) -> String {
        self.patterns.join(" ")
    }

    /// Does a pattern match `rel` (a `/`-separated snapshot path) or a trailing part of it,
    /// or `abs`?
    pub fn matches(&self, rel: &str, abs: Option<&Path>) -> bool {
        if abs.is_some_and(|a| self.set.is_match(a)) {
            return true;
        }
        let mut rest = rel;
        loop {
            if self.set.is_match(rest) {
                return true;
            }
            match rest.split_once('/') {
                Some((_, tail)) => rest = tail,
                None => return false,
            }
        }
    }

    /// Does a pattern match `rel` or a directory above it (what `--include` restores: a
    /// matching directory brings everything under it)?
    pub fn matches_here_or_above(&self, rel: &str) -> bool {
        let mut path = rel;
        loop {
            if self.matches(path, None) {
                return true;
            }
            match path.rsplit_once('/') {
                Some((parent, _)) => path = parent,
                None => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(patterns: &[&str]) -> PathFilter {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        PathFilter::new(&patterns, "--exclude").expect("valid")
    }

    #[test]
    fn patterns_match_like_restic() {
        // A bare name or a name pattern matches at any depth.
        assert!(filter(&["big.bin"]).matches("src/a/big.bin", None));
        assert!(filter(&["f1*.txt"]).matches("src/many/f12.txt", None));
        assert!(filter(&["many"]).matches("src/many", None));
        assert!(filter(&["many/"]).matches("src/many", None));
        assert!(filter(&["many/**"]).matches("src/many/x/y", None));
        // `*` stays within a component; `**` crosses them.
        assert!(!filter(&["src/*.txt"]).matches("src/a/b.txt", None));
        assert!(filter(&["src/**/*.txt"]).matches("src/a/b.txt", None));
        assert!(filter(&["docs/*.md"]).matches("src/docs/a.md", None));
        // Parts of a name do not match.
        assert!(!filter(&["big"]).matches("src/big.bin", None));
        assert!(!filter(&["any"]).matches("src/many", None));
        // The absolute path, for create.
        assert!(
            filter(&["/home/*/big.iso"]).matches("me/big.iso", Some(Path::new("/home/me/big.iso")))
        );
        // --include: a matching directory brings what is under it.
        assert!(filter(&["src/docs"]).matches_here_or_above("src/docs/a/b.md"));
        assert!(filter(&["docs"]).matches_here_or_above("src/docs/a.md"));
        assert!(!filter(&["docs"]).matches_here_or_above("src/other/a.md"));
        // A bad glob is a usage error naming the flag.
        let bad = PathFilter::new(&["a[".to_string()], "--exclude");
        assert!(matches!(bad, Err(Error::Usage(m)) if m.contains("--exclude a[")));
    }
}
