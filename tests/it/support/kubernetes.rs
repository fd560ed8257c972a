//! The Kubernetes manifests of packaging/kubernetes and their validation, as the test suite runs
//! it (tests/it/containers.rs for the FUSE DaemonSet, tests/it/csi/manifests.rs for the CSI
//! provider's).

use std::path::Path;
use std::process::Stdio;

pub const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/kubernetes");

/// `packaging/kubernetes/validate.sh ARGS` (it installs kubernetes-validate under target/ on
/// first use); its exit status and everything it printed.
pub fn validate(args: &[&Path]) -> (bool, String) {
    let out = std::process::Command::new(format!("{MANIFESTS}/validate.sh"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run validate.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
