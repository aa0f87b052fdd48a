//! `cargo xtask package`: a Debian package of the monitor, built with dpkg-deb from a
//! release build: the binary, the systemd unit, the example configuration (a conffile),
//! the example policies, the man pages and the shell completions.
//!
//! ```text
//! /usr/bin/monitor
//! /lib/systemd/system/monitor.service
//! /etc/monitor/monitor.toml                       (conffile)
//! /etc/monitor/policies/                          (empty: the operator's policy)
//! /usr/share/doc/monitor/examples/policies/...    (the repository's policies/)
//! /usr/share/doc/monitor/copyright
//! /usr/share/man/man1/monitor.1.gz, monitor-run.1.gz, ...
//! /usr/share/bash-completion/completions/monitor
//! /usr/share/zsh/vendor-completions/_monitor
//! /usr/share/fish/vendor_completions.d/monitor.fish
//! ```
//!
//! The maintainer scripts reload systemd and, on an upgrade, restart a running daemon: the
//! new one adopts the pinned links, so enforcement has no gap. Removing the package stops
//! the daemon but leaves the XDP program enforcing and the state directory in place (a
//! learned baseline takes weeks to rebuild); `monitor detach` first takes enforcement off.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::cmd;

/// The package's name (and the unit's, and the binary's).
const NAME: &str = "monitor";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the .deb (default: target/package).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| cmd::workspace_root().join("target"), PathBuf::from)
}

pub fn run(args: Args) -> Result<()> {
    let deb = build(args.out.as_deref())?;
    println!("xtask package: {}", deb.display());
    Ok(())
}

/// Builds the package; returns the path of the .deb.
pub fn build(out: Option<&Path>) -> Result<PathBuf> {
    let root = cmd::workspace_root();
    cmd::run(cmd::cargo().args(["build", "--release", "--package", NAME, "--bin", NAME]))?;
    let exe = target_dir().join("release").join(NAME);
    let version = cmd::output(Command::new(&exe).arg("--version"))?
        .split_whitespace()
        .nth(1)
        .context("`monitor --version` names no version")?
        .to_owned();
    let arch = cmd::output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_owned();
    let out = out.map_or_else(|| target_dir().join("package"), Path::to_path_buf);
    let stage = out.join(format!("{NAME}_{version}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }

    // The binary, without its debug information (the release profile keeps line tables).
    let bin = stage.join("usr/bin").join(NAME);
    copy(&exe, &bin)?;
    cmd::run(Command::new("strip").arg("--strip-debug").arg(&bin))?;
    copy(
        &root.join("packaging/monitor.service"),
        &stage.join("lib/systemd/system/monitor.service"),
    )?;
    copy(
        &root.join("packaging/monitor.toml"),
        &stage.join("etc/monitor/monitor.toml"),
    )?;
    mkdir(&stage.join("etc/monitor/policies"))?;
    let doc = stage.join("usr/share/doc").join(NAME);
    copy_tree(&root.join("policies"), &doc.join("examples/policies"))?;
    fs::write(doc.join("copyright"), copyright())
        .with_context(|| format!("writing {}", doc.display()))?;
    man_pages(&exe, &stage.join("usr/share/man/man1"))?;
    completions(&exe, &stage)?;
    control(&stage, &version, &arch, &exe)?;
    let deb = out.join(format!("{NAME}_{version}_{arch}.deb"));
    cmd::run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    Ok(deb)
}

fn mkdir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        mkdir(dir)?;
    }
    fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    mkdir(to)?;
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path = entry?.path();
        let name = path.file_name().context("a file name")?;
        if path.is_dir() {
            copy_tree(&path, &to.join(name))?;
        } else {
            copy(&path, &to.join(name))?;
        }
    }
    Ok(())
}

/// The binary's own man pages (`monitor man DIR`), compressed as Debian ships them.
fn man_pages(exe: &Path, dir: &Path) -> Result<()> {
    cmd::run(Command::new(exe).arg("man").arg(dir))?;
    let mut pages: Vec<PathBuf> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    pages.sort();
    if !pages.iter().any(|p| p.ends_with("monitor.1")) {
        bail!("`monitor man` wrote no monitor.1 into {}", dir.display());
    }
    // -n: no name or time stamp in the archive, so the package is reproducible.
    cmd::run(Command::new("gzip").args(["-9", "-n", "-f"]).args(&pages))
}

/// bash, zsh and fish completions where those shells look for a package's.
fn completions(exe: &Path, stage: &Path) -> Result<()> {
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/monitor"),
        ("zsh", "usr/share/zsh/vendor-completions/_monitor"),
        ("fish", "usr/share/fish/vendor_completions.d/monitor.fish"),
    ] {
        let script = cmd::output(Command::new(exe).args(["completions", shell]))?;
        let path = stage.join(path);
        if let Some(dir) = path.parent() {
            mkdir(dir)?;
        }
        fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn copyright() -> String {
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
     Upstream-Name: monitor\n\n\
     Files: *\n\
     License: MIT or Apache-2.0\n"
        .to_owned()
}

/// The newest `GLIBC_2.N` symbol version the binary asks for: its libc6 dependency.
pub fn glibc_needed(binary: &[u8]) -> Option<(u32, u32)> {
    let needle = b"GLIBC_2.";
    binary
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .filter_map(|(at, _)| {
            let digits: String = binary[at + needle.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .map(|&b| char::from(b))
                .collect();
            digits.parse().ok().map(|minor| (2, minor))
        })
        .max()
}

/// DEBIAN/: control, conffiles and the maintainer scripts.
fn control(stage: &Path, version: &str, arch: &str, exe: &Path) -> Result<()> {
    let debian = stage.join("DEBIAN");
    mkdir(&debian)?;
    let binary = fs::read(exe).with_context(|| format!("reading {}", exe.display()))?;
    let (major, minor) = glibc_needed(&binary).context("the binary names no GLIBC version")?;
    let installed_kb = du_kb(stage)?;
    fs::write(
        debian.join("control"),
        format!(
            "Package: {NAME}\n\
             Version: {version}\n\
             Architecture: {arch}\n\
             Maintainer: Hospital network security <netsec@hospital.invalid>\n\
             Installed-Size: {installed_kb}\n\
             Depends: libc6 (>= {major}.{minor}), libgcc-s1\n\
             Section: net\n\
             Priority: optional\n\
             Description: XDP flow monitor and micro-segmentation enforcer for hospitals\n \
             Runs inline on a ward's edge router: counts every medical device's flows at line\n \
             rate in XDP, learns each device's normal traffic and, once told to enforce,\n \
             drops what falls outside it, never a life-critical device's traffic by\n \
             surprise. Needs Linux 5.11 or later with BTF.\n"
        ),
    )?;
    fs::write(debian.join("conffiles"), "/etc/monitor/monitor.toml\n")?;
    script(&debian.join("postinst"), POSTINST)?;
    script(&debian.join("prerm"), PRERM)?;
    script(&debian.join("postrm"), POSTRM)?;
    Ok(())
}

/// Kilobytes under `dir` (Installed-Size), DEBIAN/ left out.
fn du_kb(dir: &Path) -> Result<u64> {
    fn walk(dir: &Path, total: &mut u64) -> Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name() == "DEBIAN" {
                continue;
            }
            let meta = entry.metadata()?;
            if meta.is_dir() {
                walk(&entry.path(), total)?;
            } else {
                *total += meta.len();
            }
        }
        Ok(())
    }
    let mut total = 0;
    walk(dir, &mut total)?;
    Ok(total.div_ceil(1024))
}

fn script(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

/// After unpacking: systemd learns the unit; an upgrade restarts a running daemon, which
/// adopts the pinned links (the program on each interface is replaced atomically).
const POSTINST: &str = r#"#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
    if [ -n "$2" ]; then
        # An upgrade: the new daemon adopts the pinned links, without an enforcement gap.
        systemctl try-restart monitor.service >/dev/null || true
    fi
fi
exit 0
"#;

/// Before removal (not an upgrade): stop the daemon; enforcement stays.
const PRERM: &str = r#"#!/bin/sh
set -e
if [ "$1" = remove ]; then
    if [ -d /run/systemd/system ]; then
        systemctl stop monitor.service >/dev/null || true
    fi
    if [ -e /sys/fs/bpf/monitor ]; then
        echo "monitor: the XDP program stays attached and enforcing; run 'monitor detach'" \
             "before removing the package to take it off" >&2
    fi
fi
exit 0
"#;

/// After removal: systemd forgets the unit. The state directory stays even on purge.
const POSTRM: &str = r#"#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
fi
if [ "$1" = purge ]; then
    echo "monitor: /var/lib/monitor (inventory, learned baseline, history) is kept;" \
         "remove it by hand if it is no longer needed" >&2
fi
exit 0
"#;

#[cfg(test)]
mod tests {
    use super::glibc_needed;

    #[test]
    fn the_newest_glibc_version_named_is_the_dependency() {
        let binary = b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.17\0GLIBC_PRIVATE\0";
        assert_eq!(glibc_needed(binary), Some((2, 34)));
        assert_eq!(glibc_needed(b"no versions"), None);
    }
}
