//! Integration tests: one binary so the AWS SDK is linked once.

mod support;

mod aws_source;
mod bad_input;
mod canary;
mod cli;
mod config;
mod containers;
mod csi;
mod env;
mod fake_selftest;
mod fstab;
mod hooks;
mod http;
mod lambda;
mod moto_tier;
mod mount;
mod runc;
mod ssm;
mod storms;
mod systemd;
mod watch;
