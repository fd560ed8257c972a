//! Who may read what, and what each file presents (docs/ARCHITECTURE.md#access-policy).
//!
//! Rules map name globs to an owner, a group and a mode; the first rule whose glob matches a
//! name decides, and the global defaults (`--uid`, `--gid`, `--file-mode`, `--dir-mode`)
//! fill in whatever no rule says. The decision is the kernel's: root reads everything, the
//! owner gets the owner bits, a member of the group (primary or supplementary) the group bits,
//! everyone else the other bits — and only the first class that applies counts.
//!
//! Globs use `/` as a separator that `*` does not cross: `prod/*` is the secrets directly
//! under `prod/`, `prod/**` everything below it. A directory matches by its own path, so a
//! rule for `prod/**` presents the files and directories under `prod/`, and `prod` the
//! directory itself.

use std::fmt;

use globset::{Glob, GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};

use crate::caller::Caller;
use crate::error::{Error, Result};

/// A user or group as the configuration names it: a name from the system's databases, or a
/// number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Principal {
    Id(u32),
    Name(String),
}

/// A permission mode written as an octal string ("0440"), so that a TOML integer written in
/// decimal cannot silently mean something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        match u32::from_str_radix(digits, 8) {
            Ok(m) if m <= 0o7777 && !digits.is_empty() => Ok(Mode(m)),
            _ => Err(Error::config(format!(
                "invalid mode {s:?}: expected octal digits like 0440"
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(i64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::Number(n) => Err(serde::de::Error::custom(format!(
                "write the mode as an octal string, like \"0{n:o}\" or \"{n}\", not a number"
            ))),
        }
    }
}

impl Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// One `[[policy]]` rule as the configuration writes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// A glob over secret names: `prod/**`, `team-?/*`, `{a,b}/db`.
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Principal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<Principal>,
    /// The mode of the files the rule matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// The mode of the directories the rule matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir_mode: Option<Mode>,
}

/// What applies where no rule speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    pub uid: u32,
    pub gid: u32,
    pub file_mode: Mode,
    pub dir_mode: Mode,
}

pub const DEFAULT_FILE_MODE: Mode = Mode(0o440);
pub const DEFAULT_DIR_MODE: Mode = Mode(0o550);

/// Looks up user and group names; the system's databases in production, a table in tests.
pub trait Directory {
    fn uid_of(&self, user: &str) -> Option<u32>;
    fn gid_of(&self, group: &str) -> Option<u32>;
}

/// The system's user and group databases (NSS: /etc/passwd, LDAP, sssd, ...).
pub struct SystemDirectory;

impl Directory for SystemDirectory {
    fn uid_of(&self, user: &str) -> Option<u32> {
        nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    }

    fn gid_of(&self, group: &str) -> Option<u32> {
        nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    }
}

/// The uid, gid and mode a file or directory presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    pub uid: u32,
    pub gid: u32,
    pub mode: Mode,
}

/// The permission bits a request needs, as in access(2).
pub const READ: u32 = 4;
pub const EXECUTE: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub attrs: Attrs,
    /// The index of the rule that decided, `None` for the defaults; for audit records.
    pub rule: Option<usize>,
}

#[derive(Debug)]
struct Rule {
    matcher: GlobMatcher,
    owner: Option<u32>,
    group: Option<u32>,
    mode: Option<Mode>,
    dir_mode: Option<Mode>,
}

/// The policy as the front ends hold it: replaced whole on SIGHUP, read without locking.
pub type SharedPolicy = std::sync::Arc<arc_swap::ArcSwap<Policy>>;

pub fn shared(policy: Policy) -> SharedPolicy {
    std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(policy))
}

#[derive(Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    defaults: Defaults,
}

impl Policy {
    /// Compiles the rules, resolving user and group names now, so that a typo is a
    /// configuration error at start-up rather than a wrong owner later.
    pub fn new(specs: &[RuleSpec], defaults: Defaults, directory: &dyn Directory) -> Result<Self> {
        let rules = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                compile(spec, directory).map_err(|why| {
                    Error::config(format!(
                        "policy rule {} (path {:?}): {why}",
                        i + 1,
                        spec.path
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Policy { rules, defaults })
    }

    /// Only the defaults; what a process without policy rules uses.
    pub fn defaults_only(defaults: Defaults) -> Self {
        Policy {
            rules: Vec::new(),
            defaults,
        }
    }

    pub fn defaults(&self) -> &Defaults {
        &self.defaults
    }

    fn first_match(&self, name: &str) -> Option<(usize, &Rule)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matcher.is_match(name))
    }

    fn attrs(&self, name: &str, dir: bool) -> (Attrs, Option<usize>) {
        let d = &self.defaults;
        let (rule, index) = match self.first_match(name) {
            Some((i, r)) => (Some(r), Some(i)),
            None => (None, None),
        };
        let mode = if dir {
            rule.and_then(|r| r.dir_mode).unwrap_or(d.dir_mode)
        } else {
            rule.and_then(|r| r.mode).unwrap_or(d.file_mode)
        };
        let attrs = Attrs {
            uid: rule.and_then(|r| r.owner).unwrap_or(d.uid),
            gid: rule.and_then(|r| r.group).unwrap_or(d.gid),
            mode,
        };
        (attrs, index)
    }

    /// What the secret `name` presents as a file.
    pub fn file_attrs(&self, name: &str) -> Attrs {
        self.attrs(name, false).0
    }

    /// What the directory at `path` (no trailing slash; "" for the root) presents.
    pub fn dir_attrs(&self, path: &str) -> Attrs {
        self.attrs(path, true).0
    }

    /// May `caller` have `want` (e.g. [`READ`]) on the secret `name`?
    pub async fn check_file(&self, caller: &Caller, name: &str, want: u32) -> Decision {
        let (attrs, rule) = self.attrs(name, false);
        Decision {
            allowed: permits(caller, &attrs, want).await,
            attrs,
            rule,
        }
    }

    /// May `caller` have `want` on the directory `path`?
    pub async fn check_dir(&self, caller: &Caller, path: &str, want: u32) -> Decision {
        let (attrs, rule) = self.attrs(path, true);
        Decision {
            allowed: permits(caller, &attrs, want).await,
            attrs,
            rule,
        }
    }
}

fn compile(spec: &RuleSpec, directory: &dyn Directory) -> std::result::Result<Rule, String> {
    let glob: Glob = GlobBuilder::new(&spec.path)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("bad glob: {}", e.kind()))?;
    let owner = spec
        .owner
        .as_ref()
        .map(|p| resolve(p, |n| directory.uid_of(n), "user"))
        .transpose()?;
    let group = spec
        .group
        .as_ref()
        .map(|p| resolve(p, |n| directory.gid_of(n), "group"))
        .transpose()?;
    Ok(Rule {
        matcher: glob.compile_matcher(),
        owner,
        group,
        mode: spec.mode,
        dir_mode: spec.dir_mode,
    })
}

/// A user or group as a number: given as one, or looked up by name.
pub fn resolve(
    who: &Principal,
    lookup: impl Fn(&str) -> Option<u32>,
    what: &str,
) -> std::result::Result<u32, String> {
    match who {
        Principal::Id(id) => Ok(*id),
        Principal::Name(name) => match name.parse::<u32>() {
            Ok(id) => Ok(id),
            Err(_) => lookup(name).ok_or_else(|| format!("no {what} named {name:?}")),
        },
    }
}

/// The kernel's decision (generic_permission without ACLs): root may read and search
/// anything; otherwise the first matching class of owner, group, other decides.
///
/// The caller's supplementary groups are looked up (see [`Caller::groups`]) only when they
/// can change the answer: not for root, the owner or a member by primary gid, and not when
/// the group and other bits agree on `want`.
pub async fn permits(caller: &Caller, attrs: &Attrs, want: u32) -> bool {
    let mode = attrs.mode.0;
    let grants = |bits: u32| bits & 0o7 & want == want;
    if caller.uid == 0 {
        true
    } else if caller.uid == attrs.uid {
        grants(mode >> 6)
    } else if caller.gid == attrs.gid {
        grants(mode >> 3)
    } else if grants(mode >> 3) == grants(mode) {
        grants(mode)
    } else if caller.groups().await.contains(&attrs.gid) {
        grants(mode >> 3)
    } else {
        grants(mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    struct Table(HashMap<&'static str, u32>, HashMap<&'static str, u32>);

    impl Directory for Table {
        fn uid_of(&self, user: &str) -> Option<u32> {
            self.0.get(user).copied()
        }
        fn gid_of(&self, group: &str) -> Option<u32> {
            self.1.get(group).copied()
        }
    }

    fn table() -> Table {
        Table(
            HashMap::from([("alice", 1001), ("bob", 1002)]),
            HashMap::from([("ops", 2001), ("dev", 2002)]),
        )
    }

    const DEFAULTS: Defaults = Defaults {
        uid: 0,
        gid: 0,
        file_mode: DEFAULT_FILE_MODE,
        dir_mode: DEFAULT_DIR_MODE,
    };

    fn policy(toml_text: &str) -> Result<Policy> {
        #[derive(Deserialize)]
        struct Doc {
            policy: Vec<RuleSpec>,
        }
        let doc: Doc = toml::from_str(toml_text).map_err(|e| Error::config(e.to_string()))?;
        Policy::new(&doc.policy, DEFAULTS, &table())
    }

    fn caller(uid: u32, gid: u32, groups: &[u32]) -> Caller {
        Caller::with_groups(uid, gid, None, groups.to_vec())
    }

    const RULES: &str = r#"
        [[policy]]
        path = "prod/db"
        owner = "alice"
        group = "ops"
        mode = "0440"

        [[policy]]
        path = "prod/**"
        owner = 1002
        group = "2002"
        mode = "0400"
        dir_mode = "0555"

        [[policy]]
        path = "public/*"
        mode = "0444"
    "#;

    #[tokio::test]
    async fn first_matching_rule_wins_and_defaults_fill_in() {
        let p = policy(RULES).unwrap();
        assert_eq!(
            p.file_attrs("prod/db"),
            Attrs {
                uid: 1001,
                gid: 2001,
                mode: Mode(0o440)
            }
        );
        assert_eq!(
            p.file_attrs("prod/api/key"),
            Attrs {
                uid: 1002,
                gid: 2002,
                mode: Mode(0o400)
            }
        );
        assert_eq!(
            p.file_attrs("public/motd"),
            Attrs {
                uid: 0,
                gid: 0,
                mode: Mode(0o444)
            }
        );
        // `*` does not cross `/`.
        assert_eq!(
            p.file_attrs("public/a/b"),
            Attrs {
                uid: 0,
                gid: 0,
                mode: DEFAULT_FILE_MODE
            }
        );
        assert_eq!(
            p.file_attrs("other"),
            Attrs {
                uid: 0,
                gid: 0,
                mode: DEFAULT_FILE_MODE
            }
        );
        assert_eq!(p.dir_attrs("prod/api").mode, Mode(0o555));
        assert_eq!(p.dir_attrs("prod").mode, DEFAULT_DIR_MODE);
        assert_eq!(
            p.check_file(&caller(5, 5, &[]), "prod/db", READ).await.rule,
            Some(0)
        );
        assert_eq!(
            p.check_file(&caller(5, 5, &[]), "other", READ).await.rule,
            None
        );
    }

    #[tokio::test]
    async fn decides_as_the_kernel_does() {
        let p = policy(RULES).unwrap();
        let allowed = async |c: Caller, name: &str| p.check_file(&c, name, READ).await.allowed;
        // prod/db: alice:ops 0440
        assert!(allowed(caller(1001, 9, &[]), "prod/db").await, "owner");
        assert!(
            allowed(caller(7, 2001, &[]), "prod/db").await,
            "primary group"
        );
        assert!(
            allowed(caller(7, 9, &[3, 2001]), "prod/db").await,
            "supplementary group"
        );
        assert!(!allowed(caller(7, 9, &[3]), "prod/db").await, "other");
        assert!(allowed(caller(0, 0, &[]), "prod/db").await, "root");
        // prod/x: 1002:2002 0400 — the group class applies and denies, even to a member.
        assert!(allowed(caller(1002, 9, &[]), "prod/x").await);
        assert!(!allowed(caller(7, 2002, &[]), "prod/x").await);
        // Owner class is chosen first even when the other bits would allow.
        let odd = Attrs {
            uid: 7,
            gid: 7,
            mode: Mode(0o044),
        };
        assert!(!permits(&caller(7, 7, &[]), &odd, READ).await);
        assert!(permits(&caller(8, 8, &[]), &odd, READ).await);
        // And the group class before other, for a supplementary group too.
        let group_denied = Attrs {
            uid: 7,
            gid: 5,
            mode: Mode(0o404),
        };
        assert!(!permits(&caller(8, 8, &[5]), &group_denied, READ).await);
        assert!(permits(&caller(8, 8, &[6]), &group_denied, READ).await);
        // Directories: listing needs r and x.
        assert!(
            p.check_dir(&caller(9, 9, &[]), "prod/api", READ | EXECUTE)
                .await
                .allowed
        );
        assert!(
            !p.check_dir(&caller(9, 9, &[]), "other", READ | EXECUTE)
                .await
                .allowed
        );
    }

    static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

    fn counted(_: u32, _: u32, _: Option<u32>) -> Vec<u32> {
        LOOKUPS.fetch_add(1, Relaxed);
        vec![2001]
    }

    #[tokio::test]
    async fn groups_are_looked_up_only_when_they_can_change_the_answer() {
        let p = policy(RULES).unwrap();
        let cases = [
            ((0, 0), "prod/db", true, 0, "root"),
            ((1001, 9), "prod/db", true, 0, "owner"),
            ((7, 2001), "prod/db", true, 0, "primary group"),
            (
                (7, 9),
                "public/motd",
                true,
                0,
                "0444: group and other agree",
            ),
            ((7, 9), "prod/x", false, 0, "0400: group and other agree"),
            ((7, 9), "prod/db", true, 1, "0440: only a member may read"),
        ];
        for ((uid, gid), name, allowed, lookups, why) in cases {
            let before = LOOKUPS.load(Relaxed);
            let c = Caller::with_resolver(uid, gid, None, counted);
            assert_eq!(p.check_file(&c, name, READ).await.allowed, allowed, "{why}");
            assert_eq!(p.check_file(&c, name, READ).await.allowed, allowed, "{why}");
            assert_eq!(
                LOOKUPS.load(Relaxed) - before,
                lookups,
                "{why}: once at most"
            );
        }
    }

    #[test]
    fn bad_rules_are_config_errors_naming_the_rule() {
        let cases = [
            (
                "[[policy]]\npath = \"a\"\nowner = \"nobody-such\"",
                "no user named",
            ),
            (
                "[[policy]]\npath = \"a\"\ngroup = \"nogroup-such\"",
                "no group named",
            ),
            ("[[policy]]\npath = \"a[\"", "bad glob"),
            ("[[policy]]\npath = \"a\"\nmode = \"0999\"", "invalid mode"),
            ("[[policy]]\npath = \"a\"\nmode = 440", "octal string"),
            (
                "[[policy]]\npath = \"a\"\ncolour = \"red\"",
                "unknown field",
            ),
        ];
        for (text, needle) in cases {
            let e = policy(text).unwrap_err();
            assert!(e.message().contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn system_directory_resolves_root() {
        assert_eq!(SystemDirectory.uid_of("root"), Some(0));
        assert_eq!(SystemDirectory.gid_of("root"), Some(0));
        assert_eq!(SystemDirectory.uid_of("no-such-user-secretsfs"), None);
    }

    #[test]
    fn modes_parse_as_octal() {
        assert_eq!("0440".parse::<Mode>().unwrap(), Mode(0o440));
        assert_eq!("440".parse::<Mode>().unwrap(), Mode(0o440));
        assert_eq!("0o550".parse::<Mode>().unwrap(), Mode(0o550));
        assert!("".parse::<Mode>().is_err());
        assert!("8".parse::<Mode>().is_err());
        assert!("17777".parse::<Mode>().is_err());
        assert_eq!(Mode(0o440).to_string(), "0440");
    }
}
