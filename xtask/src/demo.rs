//! `cargo xtask demo`: set up what is missing, build the monitor, and run its demo lab
//! (`monitor demo`), the project's main job on its embedded default.

use anyhow::{Context, Result};

use crate::{cmd, setup};

pub fn run() -> Result<()> {
    setup::run()?;
    cmd::run(cmd::cargo().args(["build", "--release", "--package", "monitor"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || cmd::workspace_root().join("target"),
        std::path::PathBuf::from,
    );
    let exe = target.join("release/monitor");
    let status = std::process::Command::new(&exe)
        .arg("demo")
        .status()
        .with_context(|| format!("running {}", exe.display()))?;
    anyhow::ensure!(status.success(), "the demo failed ({status})");
    Ok(())
}
