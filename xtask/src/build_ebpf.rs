//! `cargo xtask build-ebpf`: the XDP program is built by monitor's build.rs, so building
//! `monitor` is the one way to get it, with the same flags as every other build.

use anyhow::Result;

use crate::cmd;

pub fn run() -> Result<()> {
    cmd::run(cmd::cargo().args(["build", "--package", "monitor"]))
}
