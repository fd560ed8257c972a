//! What the kernel caches, and for whom: listings are per caller and current, and a policy
//! change reaches the kernel's cached attributes at once, in the default read path too.

use std::time::Duration;

use crate::support::cli::strs;
use crate::support::mount::Mounted;
use crate::support::nobody::cat_as_nobody;
use crate::support::policy::PolicyFixture;

use super::{ls_as_nobody, set};

#[tokio::test]
async fn two_users_listing_one_directory_in_turn_each_see_their_own_listing() {
    let fixture = PolicyFixture::start();
    let mut global = fixture.global_args();
    global.extend(["--dir-mode".into(), "0555".into()]);
    let m = Mounted::start(&strs(&global), &[]).await;
    let root = m.path("");
    let everything = set(&["private", "public", "team"]);
    for _ in 0..2 {
        assert_eq!(ls_as_nobody(&root), set(&["public", "team"]));
        assert_eq!(super::names(&root), everything, "root after nobody");
    }
    // `ls -la` by root first must not show nobody root's listing either.
    assert_eq!(ls_as_nobody(&root), set(&["public", "team"]));
}

#[tokio::test]
async fn a_created_and_a_deleted_secret_show_in_the_next_listing_after_the_listing_ttl() {
    let fixture = PolicyFixture::start();
    let mut global = fixture.global_args();
    global.extend(["--list-ttl", "1", "--ttl", "1"].map(String::from));
    for mode in [&[][..], &["--no-kernel-cache"][..]] {
        let m = Mounted::start(&strs(&global), mode).await;
        let root = m.path("");
        let before = super::names(&root);
        assert!(before.contains("public"), "{before:?}");
        assert!(std::fs::read(m.path("public")).is_ok());
        fixture.fake.put_string("created", "new");
        fixture.fake.delete_secret("public");
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let after = super::names(&root);
        assert!(after.contains("created"), "{mode:?}: {after:?}");
        assert!(!after.contains("public"), "{mode:?}: {after:?}");
        let gone = std::fs::read(m.path("public")).unwrap_err();
        assert_eq!(
            super::errno_of(&gone),
            super::libc_errno::ENOENT,
            "{mode:?}"
        );
        fixture.fake.put_string("public", "value of public");
        fixture.fake.delete_secret("created");
    }
}

#[tokio::test]
async fn a_policy_change_on_sighup_applies_to_the_next_open_at_once() {
    let fixture = PolicyFixture::start();
    let config = tempfile::NamedTempFile::new().unwrap();
    let open_to_all = "[[policy]]\npath = \"private\"\nmode = \"0444\"\n";
    let owner_only = "[[policy]]\npath = \"private\"\nmode = \"0400\"\n";
    std::fs::write(config.path(), open_to_all).unwrap();
    let mut global = crate::support::cli::aws_args(&fixture.fake.endpoint_url());
    // A long TTL: the kernel would keep the old attributes for five minutes on its own.
    global.extend(["--ttl", "300", "--dir-mode", "0555", "--config"].map(String::from));
    global.push(config.path().to_str().unwrap().into());
    let m = Mounted::start(&strs(&global), &[]).await;
    let file = m.path("private");
    assert!(cat_as_nobody(&file, &[]).status.success());
    for (round, (text, readable)) in [(owner_only, false), (open_to_all, true)]
        .into_iter()
        .enumerate()
    {
        std::fs::write(config.path(), text).unwrap();
        m.hangup();
        m.wait_for_log("policy replaced", round + 1).await;
        // The kernel is told from a task of its own: give it a moment, not a TTL.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while cat_as_nobody(&file, &[]).status.success() != readable {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: the kernel still decides with the old mode"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
