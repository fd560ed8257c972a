//! The policy fixture: three secrets in a fake Secrets Manager, each holding `value of NAME`,
//! and a config whose `[[policy]]` decides them for other users: `private` by the default
//! modes (the owner alone), `public` for everyone (0444), `team/app` for group
//! [`TEAM_GID`] (0440).

use super::cli::aws_args;
use super::fake_sm::FakeSecretsManager;

/// The group that may read `team/app`.
pub const TEAM_GID: u32 = 4242;

const SECRETS: [&str; 3] = ["private", "public", "team/app"];

const POLICY: &str = "[[policy]]\npath = \"team/**\"\ngroup = 4242\nmode = \"0440\"\n\n\
                      [[policy]]\npath = \"public\"\nmode = \"0444\"\n";

pub struct PolicyFixture {
    pub fake: FakeSecretsManager,
    config: tempfile::NamedTempFile,
}

impl PolicyFixture {
    pub fn start() -> PolicyFixture {
        let fake = FakeSecretsManager::start();
        for name in SECRETS {
            fake.put_string(name, &value_of(name));
        }
        let config = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(config.path(), POLICY).unwrap();
        PolicyFixture { fake, config }
    }

    /// `--source aws --endpoint-url URL --region us-east-1 --config CONFIG`: the fake with the
    /// policy.
    pub fn global_args(&self) -> Vec<String> {
        let mut global = aws_args(&self.fake.endpoint_url());
        global.extend([
            "--config".into(),
            self.config.path().to_str().unwrap().into(),
        ]);
        global
    }
}

/// What the secret `name` holds.
fn value_of(name: &str) -> String {
    format!("value of {name}")
}
