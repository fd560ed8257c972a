//! Access: every mutation is EROFS, and other users are decided by mode and policy before any
//! upstream call.

use std::path::Path;
use std::process::Command;

use crate::support::cli::{demo_source, strs};
use crate::support::fake_sm::Op;
use crate::support::mount::Mounted;
use crate::support::nobody::cat_as_nobody;
use crate::support::policy::{PolicyFixture, TEAM_GID};

use super::{errno_of, libc_errno, ls_as_nobody, set};

#[tokio::test]
async fn every_mutation_is_erofs() {
    let m = Mounted::start(&["--source", &demo_source()], &[]).await;
    let file = m.path("prod/db");
    let results: Vec<(&str, std::io::Result<()>)> = vec![
        (
            "write",
            std::fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .map(drop),
        ),
        ("create", std::fs::File::create(m.path("new")).map(drop)),
        ("mkdir", std::fs::create_dir(m.path("newdir"))),
        ("unlink", std::fs::remove_file(&file)),
        ("rmdir", std::fs::remove_dir(m.path("tls"))),
        ("rename", std::fs::rename(&file, m.path("prod/db2"))),
        (
            "chmod",
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o777)),
        ),
        (
            "truncate",
            nix::unistd::truncate(&file, 0).map_err(std::io::Error::from),
        ),
        ("setxattr", setxattr(&file)),
    ];
    for (op, result) in results {
        let err = result.expect_err(op);
        assert_eq!(errno_of(&err), libc_errno::EROFS, "{op}: {err}");
    }
}

fn setxattr(path: &Path) -> std::io::Result<()> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os,sys; os.setxattr(sys.argv[1], 'user.x', b'1')",
        ])
        .arg(path)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(())
    } else if stderr.contains("Read-only file system") {
        Err(std::io::Error::from_raw_os_error(libc_errno::EROFS))
    } else {
        Err(std::io::Error::other(stderr.into_owned()))
    }
}

#[tokio::test]
async fn other_users_are_decided_by_mode_and_policy_before_any_call() {
    let fixture = PolicyFixture::start();
    let fake = &fixture.fake;
    let mut global = fixture.global_args();
    global.extend(["--dir-mode".into(), "0555".into()]);
    let m = Mounted::start(&strs(&global), &[]).await;

    let denied_by_mode = cat_as_nobody(&m.path("private"), &[]);
    assert!(!denied_by_mode.status.success());
    assert!(String::from_utf8_lossy(&denied_by_mode.stderr).contains("Permission denied"));
    let denied_by_policy = cat_as_nobody(&m.path("team/app"), &[]);
    assert!(!denied_by_policy.status.success());
    let fetched: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|(op, _)| *op != Op::ListSecrets)
        .map(|(_, body)| body.to_string())
        .collect();
    assert!(
        fetched.is_empty(),
        "no upstream call for a denied reader: {fetched:?}"
    );

    assert_eq!(
        ls_as_nobody(&m.mnt),
        set(&["public", "team"]),
        "private is hidden"
    );
    let in_group = cat_as_nobody(&m.path("team/app"), &[TEAM_GID]);
    assert!(
        in_group.status.success(),
        "{}",
        String::from_utf8_lossy(&in_group.stderr)
    );
    assert!(in_group.stdout == b"value of team/app");
    let public = cat_as_nobody(&m.path("public"), &[]);
    assert!(public.stdout == b"value of public");

    let log = m.log();
    assert!(
        log.lines().any(|l| l.contains("decision=\"denied\"")
            && l.contains("uid=65534")
            && l.contains("private")),
        "the denial is logged"
    );
    assert!(!log.contains("value of"), "no value in the log");
}

/// Where the mount judges access at lookup, the kernel must enforce the same at open through
/// the entries root's lookups leave: by mode, by a rule's group, and in the stages layout.
#[tokio::test]
async fn entries_root_looked_up_do_not_let_other_users_past_the_policy() {
    let fixture = PolicyFixture::start();
    for layout in ["flat", "stages"] {
        let mut global = fixture.global_args();
        global.extend(["--dir-mode".into(), "0555".into()]);
        let m = Mounted::start(&strs(&global), &["--layout", layout]).await;
        let (private, team) = match layout {
            "flat" => (m.path("private"), m.path("team/app")),
            _ => (m.path("private/AWSCURRENT"), m.path("team/app/AWSCURRENT")),
        };
        for path in [&private, &team] {
            assert!(std::fs::read(path).is_ok(), "root reads {path:?}");
        }
        for _ in 0..2 {
            assert!(!cat_as_nobody(&private, &[]).status.success(), "{layout}");
            let outside = cat_as_nobody(&team, &[]);
            assert!(
                !outside.status.success() && outside.stdout.is_empty(),
                "{layout}: outside the group"
            );
            let inside = cat_as_nobody(&team, &[TEAM_GID]);
            assert!(
                inside.stdout == b"value of team/app",
                "{layout}: in the group"
            );
        }
    }
}
