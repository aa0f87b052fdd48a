//! Offline replay of pcap/pcapng captures through the XDP program (placeholder: being written).

use std::path::PathBuf;

/// `monitor replay` arguments.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Capture files (pcap or pcapng).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub fn command(_args: ReplayArgs) -> anyhow::Result<()> {
    anyhow::bail!("replay is not built yet")
}
