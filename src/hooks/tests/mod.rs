//! The hooks' tests: `config` needs nothing; `run` starts processes, as root for the user and
//! signal cases (the test runner here is root; those tests say so when it is not).

mod config;
mod run;
