//! The config-file target: TOML text through everything `check-config` does with it.

use crate::policy::{Directory, Policy};
use crate::settings::file::ConfigFile;
use crate::settings::{Given, Settings};
use crate::watch::WatchPattern;

use super::check_message;

/// Two known accounts, so that names in `owner`/`group` sometimes resolve; no lookups on the
/// host's own databases, whose answers would make a run depend on the machine.
struct Accounts;

impl Directory for Accounts {
    fn uid_of(&self, user: &str) -> Option<u32> {
        [("root", 0), ("app", 1000)]
            .into_iter()
            .find_map(|(n, id)| (n == user).then_some(id))
    }

    fn gid_of(&self, group: &str) -> Option<u32> {
        self.uid_of(group)
    }
}

/// The config file as `check-config` and a start read it: the file layer (settings,
/// `[[policy]]`, `[[hook]]`, `[[template]]`, the agent's keys), the settings resolved over it
/// with no flags, the policy compiled and asked, templates' attributes, hooks' patterns, and
/// the settings rendered. Every refusal is one line.
///
/// A `[[template]]` reads its `source` from disk, as the daemon does; fuzzing finds paths
/// rarely, and whatever it names is only read.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = match ConfigFile::parse(text) {
        Ok(file) => file,
        Err(why) => return check_message("ConfigFile::parse", &why, &[], &[]),
    };
    let settings = match Settings::resolve_with(&Given::default(), None, &file) {
        Ok(settings) => settings,
        Err(e) => return check_message("Settings::resolve_with", e.message(), &[], &[]),
    };
    let _ = settings.render();
    let _ = settings.http.listeners(true);
    match Policy::new(&settings.sections.policy, settings.defaults, &Accounts) {
        Ok(policy) => {
            for name in ["prod/db", "a", "", "team-1/x/y"] {
                let _ = policy.file_attrs(name);
                let _ = policy.dir_attrs(name);
            }
        }
        Err(e) => check_message("Policy::new", e.message(), &[], &[]),
    }
    for spec in &settings.sections.template {
        if let Err(e) = spec.attrs(&settings.defaults, &Accounts) {
            check_message("TemplateSpec::attrs", e.message(), &[], &[]);
        }
    }
    for hook in &settings.sections.hook {
        for watched in &hook.secrets {
            if let Err(e) = WatchPattern::parse(watched) {
                check_message("WatchPattern::parse", e.message(), &[], &[]);
            }
        }
    }
}
