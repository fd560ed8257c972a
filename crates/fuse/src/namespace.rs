//! What a path in the mount means (docs/ARCHITECTURE.md#mount-layout), without FUSE: which
//! secret or selector a file name stands for, which directories a listing implies, and which
//! names cannot be presented as paths at all.
//!
//! Paths here are relative to the mount root, without a leading `/` ("" is the root), and
//! relative to `--prefix` too: with prefix `prod/`, the secret `prod/db` is the path `db`.

use std::collections::BTreeSet;

use secretsfs_core::error::{Error, Result};
use secretsfs_core::selector::{self, Selector};
use secretsfs_core::source::SecretListing;

/// The longest file name Linux accepts in one path component.
const NAME_MAX: usize = 255;

/// How secrets map onto paths (the binary's `--layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Each secret is a file at its name; selectors are file names answered on lookup.
    Flat,
    /// Each secret is a directory of its stage labels: `NAME/AWSCURRENT`, `NAME/AWSPREVIOUS`.
    Stages,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Flat => "flat",
            Layout::Stages => "stages",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    layout: Layout,
    prefix: String,
    /// Parameter Store (`--source ssm`): names begin with `/` (the path `app/x` is the name
    /// `/app/x`), and selector file names are Parameter Store's `NAME:3` / `NAME:label`.
    parameters: bool,
}

/// What a listing says a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Secret,
    Dir,
}

impl Namespace {
    /// `prefix` limits the mount to names under it; "prod" and "prod/" both mean `prod/...`.
    pub fn new(layout: Layout, prefix: &str) -> Result<Self> {
        let trimmed = prefix.trim_matches('/');
        let prefix = if trimmed.is_empty() {
            String::new()
        } else {
            selector::validate_name(trimmed)
                .map_err(|why| Error::config(format!("invalid --prefix {prefix:?}: {why}")))?;
            format!("{trimmed}/")
        };
        Ok(Namespace {
            layout,
            prefix,
            parameters: false,
        })
    }

    /// The namespace of Parameter Store's hierarchy (`--source ssm`): every name begins with
    /// `/`, which the paths leave out, and selector file names are `NAME:VERSION` or
    /// `NAME:LABEL` ([`Selector::of_parameter`]); JSON keys are not offered.
    pub fn for_parameters(layout: Layout, prefix: &str) -> Result<Self> {
        let mut namespace = Namespace::new(layout, prefix)?;
        namespace.prefix = format!("/{}", namespace.prefix);
        namespace.parameters = true;
        Ok(namespace)
    }

    /// Whether this is the namespace of Parameter Store's hierarchy.
    pub fn is_parameters(&self) -> bool {
        self.parameters
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The prefix as ListSecrets takes it ("" for none).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The secret name a path stands for.
    pub fn secret_name(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// The path of a secret name; `None` when the name lies outside the prefix or cannot be a
    /// path (an empty, `.` or `..` component, or one longer than 255 bytes).
    pub fn path_of<'a>(&self, name: &'a str) -> Option<&'a str> {
        let path = name.strip_prefix(self.prefix.as_str())?;
        presentable(path).then_some(path)
    }

    /// Where the mount shows what `selector` names, relative to the mountpoint: in the flat
    /// layout the secret's file, or its selector file (`db:password`); in the stages layout the
    /// stage's file. `None` where the mount does not show it.
    pub fn path_of_selector(&self, selector: &Selector) -> Option<String> {
        let path = self.path_of(&selector.secret_id)?;
        let whole = selector.json_key.is_none() && selector.version_id.is_none();
        match self.layout {
            Layout::Flat if self.parameters => {
                let suffix = match (&selector.json_key, &selector.version_id) {
                    (Some(_), _) => return None,
                    (None, Some(number)) => format!(":{number}"),
                    (None, None) => match selector.version_stage.as_deref() {
                        None | Some(selector::AWSCURRENT) => String::new(),
                        Some(label) => format!(":{label}"),
                    },
                };
                let shown = format!("{path}{suffix}");
                shown
                    .rsplit('/')
                    .next()
                    .is_some_and(valid_component)
                    .then_some(shown)
            }
            Layout::Flat => {
                let shown = Selector {
                    secret_id: path.to_owned(),
                    ..selector.clone()
                }
                .to_string();
                shown
                    .rsplit('/')
                    .next()
                    .is_some_and(valid_component)
                    .then_some(shown)
            }
            Layout::Stages if whole => {
                let stage = selector
                    .version_stage
                    .as_deref()
                    .unwrap_or(selector::AWSCURRENT);
                Some(join(path, stage))
            }
            Layout::Stages => None,
        }
    }

    /// A selector file name (`db:password`, `db::AWSPREVIOUS`) in the directory `parent`:
    /// `None` when `name` is not a selector, the parse result when it is.
    pub fn selector_in(&self, parent: &str, name: &str) -> Option<Result<Selector>> {
        if self.parameters {
            let (base, suffix) = name.split_once(':')?;
            let full = self.secret_name(&join(parent, base));
            return Some(Selector::of_parameter(&full, suffix));
        }
        name.contains(':')
            .then(|| Selector::parse(&self.secret_name(&join(parent, name))))
    }
}

/// `parent/name`, or `name` at the root.
pub fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

/// Can this be a file name in a directory at all?
pub fn valid_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && name.len() <= NAME_MAX && !name.contains('/')
}

/// Whether a name is met for the first time by the listings of this process: what a listing
/// says of a name is logged once, not at every listing (bounded: past the bound, no more).
fn first_time(name: &str) -> bool {
    const KEPT: usize = 4096;
    static SEEN: std::sync::LazyLock<parking_lot::Mutex<std::collections::HashSet<String>>> =
        std::sync::LazyLock::new(Default::default);
    let mut seen = SEEN.lock();
    seen.len() < KEPT && seen.insert(name.to_owned())
}

fn presentable(path: &str) -> bool {
    path.split('/').all(valid_component)
}

/// The directory tree a listing implies: every secret name is a file, every proper prefix of
/// one ending at a `/` a directory. A name that is also a directory (`a` and `a/b`) stays a
/// file, and the names below it are unreachable as paths (still readable by `get` and HTTP).
#[derive(Debug, Default)]
pub struct Tree {
    secrets: BTreeSet<String>,
    dirs: BTreeSet<String>,
}

impl Tree {
    pub fn build(namespace: &Namespace, listing: &[SecretListing]) -> Tree {
        let mut tree = Tree::default();
        for entry in listing {
            match namespace.path_of(&entry.name) {
                Some(path) => {
                    tree.secrets.insert(path.to_owned());
                }
                None if entry.name.starts_with(namespace.prefix()) && first_time(&entry.name) => {
                    tracing::info!(target: "secretsfs::fuse::namespace", name = %entry.name,
                        "secret name cannot be a path (empty, '.' or '..' component, or one over 255 bytes); \
                         it is not listed, and stays readable with get or HTTP");
                }
                None => {}
            }
        }
        for path in &tree.secrets {
            let mut end = 0;
            while let Some(slash) = path[end..].find('/') {
                end += slash;
                tree.dirs.insert(path[..end].to_owned());
                end += 1;
            }
        }
        for clash in tree
            .secrets
            .intersection(&tree.dirs)
            .filter(|clash| first_time(clash))
        {
            tracing::info!(target: "secretsfs::fuse::namespace", path = %clash,
                "a secret name is also a directory of other names; it stays a file and the names under it are not reachable as paths");
        }
        tree
    }

    pub fn entry(&self, path: &str) -> Option<EntryKind> {
        if self.secrets.contains(path) {
            Some(EntryKind::Secret)
        } else if path.is_empty() || self.dirs.contains(path) {
            Some(EntryKind::Dir)
        } else {
            None
        }
    }

    /// The entries directly in the directory `dir`, in name order, each once.
    pub fn children(&self, dir: &str) -> Vec<(String, EntryKind)> {
        let start = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut out: Vec<(String, EntryKind)> = Vec::new();
        let take = |set: &BTreeSet<String>, kind: EntryKind, out: &mut Vec<(String, EntryKind)>| {
            for path in set
                .range(start.clone()..)
                .take_while(|p| p.starts_with(&start))
            {
                let rest = &path[start.len()..];
                if !rest.is_empty() && !rest.contains('/') {
                    out.push((rest.to_owned(), kind));
                }
            }
        };
        take(&self.secrets, EntryKind::Secret, &mut out);
        take(&self.dirs, EntryKind::Dir, &mut out);
        // A name that is both stays a file: the secret, pushed first, wins the dedup.
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|later, earlier| later.0 == earlier.0);
        out
    }

    /// Up to `count` secret paths in the same directory as `path` and after it in name order
    /// (the order of `children`, which `ls -l` looks names up in). Costs what it returns,
    /// plus the names nested in between, never the whole directory.
    pub fn secrets_after(&self, path: &str, count: usize) -> Vec<String> {
        let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
        let start = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.secrets
            .range::<str, _>((std::ops::Bound::Excluded(path), std::ops::Bound::Unbounded))
            .take_while(|p| p.starts_with(&start))
            .filter(|p| !p[start.len()..].contains('/'))
            .take(count)
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_listing_says_of_a_name_is_said_once() {
        assert!(first_time("odd//name-said-once"));
        assert!(!first_time("odd//name-said-once"));
        assert!(first_time("another//name"));
    }

    fn listing(names: &[&str]) -> Vec<SecretListing> {
        SecretListing::all_named(names)
    }

    fn flat(prefix: &str) -> Namespace {
        Namespace::new(Layout::Flat, prefix).unwrap()
    }

    #[test]
    fn listings_imply_directories() {
        let tree = Tree::build(
            &flat(""),
            &listing(&["prod/db", "prod/cache/redis", "api-key"]),
        );
        assert_eq!(
            tree.children(""),
            [
                ("api-key".into(), EntryKind::Secret),
                ("prod".into(), EntryKind::Dir)
            ]
        );
        assert_eq!(
            tree.children("prod"),
            [
                ("cache".into(), EntryKind::Dir),
                ("db".into(), EntryKind::Secret)
            ]
        );
        assert_eq!(tree.entry("prod/cache"), Some(EntryKind::Dir));
        assert_eq!(tree.entry("prod/db"), Some(EntryKind::Secret));
        assert_eq!(tree.entry("prod/nope"), None);
        assert_eq!(tree.entry(""), Some(EntryKind::Dir));
        assert_eq!(tree.secrets_after("prod/a", 5), ["prod/db"]);
    }

    #[test]
    fn the_secrets_after_a_name_are_its_siblings_in_order_and_no_more_than_asked() {
        let tree = Tree::build(
            &flat(""),
            &listing(&["d/a", "d/b", "d/b2/deep", "d/c", "d/e", "e", "top"]),
        );
        assert_eq!(tree.secrets_after("d/a", 2), ["d/b", "d/c"]);
        assert_eq!(tree.secrets_after("d/c", 10), ["d/e"]);
        assert_eq!(tree.secrets_after("d/e", 10), Vec::<String>::new());
        assert_eq!(tree.secrets_after("a", 10), ["e", "top"]);
    }

    #[test]
    fn a_name_that_is_also_a_directory_stays_a_file() {
        let tree = Tree::build(&flat(""), &listing(&["a", "a/b", "a/c/d"]));
        assert_eq!(tree.children(""), [("a".into(), EntryKind::Secret)]);
        assert_eq!(tree.entry("a"), Some(EntryKind::Secret));
    }

    #[test]
    fn unpresentable_names_are_skipped() {
        let long = format!("x/{}", "y".repeat(256));
        let names = ["ok", "a//b", "./x", "a/..", "trailing/", long.as_str()];
        let tree = Tree::build(&flat(""), &listing(&names));
        assert_eq!(tree.len(), 1);
        assert_eq!(tree.children(""), [("ok".into(), EntryKind::Secret)]);
    }

    #[test]
    fn the_prefix_is_stripped_and_limits_the_view() {
        let ns = flat("/prod");
        assert_eq!(ns.prefix(), "prod/");
        assert_eq!(ns.secret_name("db"), "prod/db");
        assert_eq!(ns.path_of("prod/db"), Some("db"));
        assert_eq!(ns.path_of("dev/db"), None);
        let tree = Tree::build(
            &ns,
            &listing(&["prod/db", "prod/x/y", "dev/z", "production"]),
        );
        assert_eq!(
            tree.children(""),
            [
                ("db".into(), EntryKind::Secret),
                ("x".into(), EntryKind::Dir)
            ]
        );
        assert!(Namespace::new(Layout::Flat, "bad prefix").is_err());
    }

    #[test]
    fn selector_file_names_map_onto_selectors() {
        let ns = flat("prod");
        let sel = ns.selector_in("team", "db:password").unwrap().unwrap();
        assert_eq!(sel.secret_id, "prod/team/db");
        assert_eq!(sel.json_key.as_deref(), Some("password"));
        let sel = ns.selector_in("", "db::AWSPREVIOUS").unwrap().unwrap();
        assert_eq!(sel.version_stage.as_deref(), Some("AWSPREVIOUS"));
        assert!(ns.selector_in("", "db").is_none());
        assert!(ns.selector_in("", "db:a:b:c:d").unwrap().is_err());
    }

    #[test]
    fn parameters_are_named_with_a_leading_slash_and_selected_by_version_or_label() {
        let ns = Namespace::for_parameters(Layout::Flat, "").unwrap();
        assert_eq!(ns.prefix(), "/");
        assert_eq!(ns.secret_name("app/prod/db-url"), "/app/prod/db-url");
        assert_eq!(ns.path_of("/app/prod/db-url"), Some("app/prod/db-url"));
        assert_eq!(ns.path_of("no-slash"), None);
        let sel = ns.selector_in("app/prod", "db-url:3").unwrap().unwrap();
        assert_eq!(sel.secret_id, "/app/prod/db-url");
        assert_eq!(sel.version_id.as_deref(), Some("3"));
        assert_eq!(sel.json_key, None);
        assert_eq!(
            ns.path_of_selector(&sel).as_deref(),
            Some("app/prod/db-url:3")
        );
        let sel = ns.selector_in("app/prod", "db-url:prod").unwrap().unwrap();
        assert_eq!(sel.version_stage.as_deref(), Some("prod"));
        assert_eq!(
            ns.path_of_selector(&sel).as_deref(),
            Some("app/prod/db-url:prod")
        );
        assert!(ns.selector_in("", "db-url").is_none());
        assert!(ns.selector_in("", "db-url:a:b").unwrap().is_err());
        assert!(ns.selector_in("", "db-url::AWSPREVIOUS").unwrap().is_err());
        let tree = Tree::build(&ns, &listing(&["/app/prod/db-url", "/app/key"]));
        assert_eq!(
            tree.children("app"),
            [
                ("key".into(), EntryKind::Secret),
                ("prod".into(), EntryKind::Dir)
            ]
        );
        let under = Namespace::for_parameters(Layout::Flat, "app").unwrap();
        assert_eq!(under.prefix(), "/app/");
        assert_eq!(under.secret_name("key"), "/app/key");
    }

    #[test]
    fn components_are_checked() {
        for bad in ["", ".", "..", "a/b", &"x".repeat(256)] {
            assert!(!valid_component(bad), "{bad}");
        }
        assert!(valid_component("db:password"));
    }
}
