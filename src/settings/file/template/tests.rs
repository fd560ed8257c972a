//! `[[template]]` entries: what the file accepts, what check-config shows, one-line errors.

use std::io::Write;

use super::TemplateSpec;
use crate::cli::Cli;
use crate::policy::{Defaults, Directory, Mode, Principal};
use crate::settings::Settings;
use crate::settings::file::ConfigFile;
use crate::template::OnMissing;

fn source(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

fn entry(path: &str, source: &tempfile::NamedTempFile, extra: &str) -> String {
    format!(
        "[[template]]\npath = {path:?}\nsource = {:?}\n{extra}\n",
        source.path().display().to_string()
    )
}

#[test]
fn good_entries_round_trip_through_check_config() {
    let db = source("{{ secret_json('prod/db').host }}\n");
    let env = source("X={{ secret('x') | shell }}\n");
    let text = entry(
        "app/database.yml",
        &db,
        "owner = \"app\"\ngroup = 0\nmode = \"0440\"\non_missing = \"enoent\"",
    ) + &entry("app/env", &env, "");
    let file = ConfigFile::parse(&text).unwrap();
    let specs = &file.sections.template;
    assert_eq!(specs.len(), 2);
    assert_eq!(specs[0].owner, Some(Principal::Name("app".into())));
    assert_eq!(specs[0].group, Some(Principal::Id(0)));
    assert_eq!(specs[0].mode, Some(Mode(0o440)));
    assert_eq!(specs[0].on_missing(), OnMissing::Enoent);
    assert_eq!(specs[1].on_missing(), OnMissing::Eio);
    assert_eq!(specs[1].mode, None);

    let cli = Cli::try_parse_args_from(["secretsfs", "serve"]).unwrap();
    let settings = Settings::resolve_with(&cli.given, None, &file).unwrap();
    let shown = settings.render();
    let (_, tables) = shown.split_once("policy rule(s)\n").unwrap();
    assert_eq!(tables.matches("[[template]]").count(), 2, "{shown}");
    assert!(!tables.contains("on_missing = \"eio\""), "{tables}");
    let again = ConfigFile::parse(tables).unwrap();
    assert_eq!(again.sections, file.sections, "{tables}");

    let t = specs[0].load().unwrap();
    assert_eq!(t.name(), "app/database.yml");
    assert_eq!(t.inputs(), [crate::Selector::parse("prod/db").unwrap()]);
}

#[test]
fn invalid_entries_are_one_line_errors_naming_the_template() {
    let good = source("x");
    let path = good.path().display().to_string();
    let cases = [
        ("path = \"\"", "template \"\": `path` is empty"),
        (
            "path = \"/etc/x\"",
            "template \"/etc/x\": `path` must be relative",
        ),
        (
            "path = \"a/db:key\"",
            "template \"a/db:key\": `path` cannot contain ':'",
        ),
        (
            "path = \"a//b\"",
            "template \"a//b\": `path` has an invalid component \"\"",
        ),
        (
            "path = \"a/../b\"",
            "template \"a/../b\": `path` has an invalid component \"..\"",
        ),
        (
            "path = \"a/\"",
            "template \"a/\": `path` has an invalid component \"\"",
        ),
    ];
    for (line, want) in cases {
        let err =
            ConfigFile::parse(&format!("[[template]]\n{line}\nsource = {path:?}\n")).unwrap_err();
        assert!(err.starts_with(want), "{line}: {err}");
        assert!(!err.contains('\n'), "{err}");
    }
    let others = [
        (
            "source = \"rel/x.j2\"",
            "template \"a\": `source` rel/x.j2 must be an absolute path",
        ),
        (
            "source = \"/nonexistent/x.j2\"",
            "template \"a\": cannot read source /nonexistent/x.j2: ",
        ),
        (
            &format!("source = {path:?}\nmode = \"999\""),
            "template \"a\": invalid mode",
        ),
        (
            &format!("source = {path:?}\nmode = 288"),
            "template \"a\": write the mode as an octal string",
        ),
        (
            &format!("source = {path:?}\non_missing = \"skip\""),
            "template \"a\": unknown variant",
        ),
        (
            &format!("source = {path:?}\nowner = true"),
            "template \"a\": ",
        ),
        (
            &format!("source = {path:?}\ntypo = 1"),
            "template \"a\": unknown field `typo`",
        ),
        ("", "template \"a\": missing field `source`"),
    ];
    for (lines, want) in others {
        let err = ConfigFile::parse(&format!("[[template]]\npath = \"a\"\n{lines}\n")).unwrap_err();
        assert!(err.starts_with(want), "{lines}: {err}");
        assert!(!err.contains('\n'), "{err}");
    }
    let err = ConfigFile::parse(&format!("[[template]]\nsource = {path:?}\n")).unwrap_err();
    assert!(err.starts_with("template 1: missing field `path`"), "{err}");
    let err = ConfigFile::parse("template = 3\n").unwrap_err();
    assert!(err.contains("[[template]]"), "{err}");
}

#[test]
fn a_source_that_does_not_compile_is_refused_without_its_text() {
    let bad = source("password: hunter2-value-x\n{{ secret(name) }}\n");
    let err = ConfigFile::parse(&entry("app/x", &bad, "")).unwrap_err();
    assert_eq!(
        err,
        "template \"app/x\": line 2, column 4: secret() takes a string literal selector"
    );
    let bad = source("{{ oops oops }}");
    let err = ConfigFile::parse(&entry("app/x", &bad, "")).unwrap_err();
    assert!(
        err.starts_with("template \"app/x\": line 1, column 9: syntax error"),
        "{err}"
    );
}

#[test]
fn two_templates_cannot_share_a_path_nor_nest() {
    let s = source("x");
    let err = ConfigFile::parse(&(entry("app/x", &s, "") + &entry("app/x", &s, ""))).unwrap_err();
    assert_eq!(
        err,
        "template \"app/x\": another template has the same path"
    );
    let err = ConfigFile::parse(&(entry("app/x", &s, "") + &entry("app/x/y", &s, ""))).unwrap_err();
    assert_eq!(
        err,
        "template \"app/x/y\": template \"app/x\" is a file, so it cannot also be a directory of \"app/x/y\""
    );
    assert!(ConfigFile::parse(&(entry("app/x", &s, "") + &entry("app/xy", &s, ""))).is_ok());
}

struct Names;
impl Directory for Names {
    fn uid_of(&self, user: &str) -> Option<u32> {
        (user == "app").then_some(1000)
    }
    fn gid_of(&self, group: &str) -> Option<u32> {
        (group == "app").then_some(2000)
    }
}

#[test]
fn attrs_resolve_names_and_fall_back_to_the_defaults() {
    let defaults = Defaults {
        uid: 0,
        gid: 0,
        file_mode: Mode(0o440),
        dir_mode: Mode(0o550),
    };
    let mut spec = TemplateSpec {
        path: "a".into(),
        source: "/x".into(),
        owner: None,
        group: None,
        mode: None,
        on_missing: None,
    };
    let a = spec.attrs(&defaults, &Names).unwrap();
    assert_eq!((a.uid, a.gid, a.mode), (0, 0, Mode(0o440)));
    spec.owner = Some(Principal::Name("app".into()));
    spec.group = Some(Principal::Name("app".into()));
    spec.mode = Some(Mode(0o400));
    let a = spec.attrs(&defaults, &Names).unwrap();
    assert_eq!((a.uid, a.gid, a.mode), (1000, 2000, Mode(0o400)));
    spec.owner = Some(Principal::Name("nobody-here".into()));
    let err = spec.attrs(&defaults, &Names).unwrap_err();
    assert_eq!(
        err.message(),
        "template \"a\": no user named \"nobody-here\""
    );
}
