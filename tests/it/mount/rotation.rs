//! Rotation: a new version shows after the TTL, and an open handle keeps the one it opened.

use std::io::Read;
use std::time::Duration;

use crate::support::cli::{aws_args, strs};
use crate::support::fake_sm::FakeSecretsManager;
use crate::support::mount::Mounted;

#[tokio::test]
async fn a_rotation_shows_after_the_ttl_with_new_size_and_mtime() {
    let fake = FakeSecretsManager::start();
    fake.put_string("rot", "short");
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--ttl".into(), "1".into()]);
    let m = Mounted::start(&strs(&global), &[]).await;
    let path = m.path("rot");
    assert!(std::fs::read(&path).unwrap() == b"short");
    let mtime_before = std::fs::metadata(&path).unwrap().modified().unwrap();
    for value in ["a much longer value than before", "tiny"] {
        std::thread::sleep(Duration::from_millis(20));
        fake.put_string("rot", value);
        std::thread::sleep(Duration::from_millis(1500));
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), value.len() as u64);
        assert!(
            meta.modified().unwrap() > mtime_before,
            "mtime moves with the version"
        );
        assert!(
            std::fs::read(&path).unwrap() == value.as_bytes(),
            "new value visible"
        );
    }
}

#[tokio::test]
async fn without_kernel_cache_an_open_handle_keeps_its_version() {
    let fake = FakeSecretsManager::start();
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--ttl".into(), "1".into()]);
    let m = Mounted::start(&strs(&global), &["--no-kernel-cache"]).await;
    for (old, new) in [
        ("the old value, longer", "new"),
        ("old", "the new value, longer"),
    ] {
        fake.put_string("rot", old);
        std::thread::sleep(Duration::from_millis(1200));
        let mut handle = std::fs::File::open(m.path("rot")).unwrap();
        let mut head = [0u8; 2];
        handle.read_exact(&mut head).unwrap();
        fake.put_string("rot", new);
        std::thread::sleep(Duration::from_millis(1200));
        assert!(
            std::fs::read(m.path("rot")).unwrap() == new.as_bytes(),
            "a new open sees the rotation"
        );
        let mut rest = Vec::new();
        handle.read_to_end(&mut rest).unwrap();
        assert!(
            head.iter().chain(&rest).copied().collect::<Vec<_>>() == old.as_bytes(),
            "the old handle reads the old bytes to the end"
        );
    }
}
