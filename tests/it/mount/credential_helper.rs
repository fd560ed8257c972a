//! A `credential_process` helper that leaves a process running (as helpers that keep an agent
//! do) must not hold up `mount`: nothing the daemon keeps open may reach what it starts.

use std::os::unix::fs::PermissionsExt;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::cli::{aws_args, strs};
use crate::support::fake_sm::FakeSecretsManager;
use crate::support::mount::Mounted;

#[tokio::test]
async fn mount_returns_while_a_credential_helpers_child_still_runs() {
    let fake = FakeSecretsManager::start();
    fake.put_string("db", "value");
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("agent.pid");
    let helper = dir.path().join("helper.sh");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n\
             sleep 300 </dev/null >/dev/null 2>&1 &\n\
             echo $! > {}\n\
             echo '{{\"Version\": 1, \"AccessKeyId\": \"x\", \"SecretAccessKey\": \"x\"}}'\n",
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "[profile helper]\ncredential_process = {}\n",
            helper.display()
        ),
    )
    .unwrap();
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--profile".into(), "helper".into()]);
    // No static keys in the environment: the profile's helper is the only way to credentials.
    let env = [
        ("AWS_CONFIG_FILE", config.to_str().unwrap()),
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
    ];
    let agent = HelpersChild(pid_file);
    let m = Mounted::start_with_env(&strs(&global), &[], &env).await;
    let still_running = kill(agent.pid().expect("the helper ran"), None).is_ok();
    assert!(
        still_running,
        "mount returned only once the helper's child had exited"
    );
    assert!(std::fs::read(m.path("db")).unwrap() == b"value");
}

/// The process the helper left running, stopped by its pid when the test ends, however it
/// ends: the test started it, through the helper.
struct HelpersChild(std::path::PathBuf);

impl HelpersChild {
    fn pid(&self) -> Option<Pid> {
        let text = std::fs::read_to_string(&self.0).ok()?;
        text.trim().parse().ok().map(Pid::from_raw)
    }
}

impl Drop for HelpersChild {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}
