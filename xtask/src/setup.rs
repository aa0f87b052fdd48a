//! `cargo xtask setup`: brings a bare CI machine (rustup stable + nightly without rust-src,
//! iproute2, nothing else) to where the workspace builds and every test can run. Each step
//! checks first and skips what is already there, so running it again is cheap.

use std::{
    fs,
    io::{ErrorKind, Read as _, Write as _},
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::cmd;

/// bpf-linker links libLLVM dynamically, so it must be this release built against the
/// nightly's own LLVM (see shared/TOOLCHAIN.md).
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Every command the tests, the lab and demo, and the bench run, and the Debian package
/// that provides each: the one list of what a bare machine needs. The test
/// `spawned::tests::setup_installs_every_program_the_tests_the_demo_and_the_bench_run` reads
/// their sources and fails on a command missing here (naming where it runs) or listed here
/// but run nowhere.
pub(crate) const TOOLS: &[(&str, &str)] = &[
    // The namespace lab (monitor/src/lab/mod.rs): namespaces, veth, addresses; forwarding.
    ("ip", "iproute2"),
    ("sysctl", "procps"),
    // Replay against an independent reader of captures.
    ("tshark", "tshark"),
    ("editcap", "wireshark-common"),
    // faults.rs: a pinned map of the wrong layout, made and read back with bpftool; a
    // private mount namespace without /sys/fs/bpf, its script.
    ("bpftool", "bpftool"),
    ("sh", "dash"),
    ("unshare", "util-linux"),
    ("umount", "mount"),
    ("stat", "coreutils"),
    ("sleep", "coreutils"),
    // `cargo xtask bench`: the nftables and xdp-filter references, GRO on veth receivers,
    // and the report's date, kernel and commit.
    ("nft", "nftables"),
    ("xdp-filter", "xdp-tools"),
    ("ethtool", "ethtool"),
    ("date", "coreutils"),
    ("uname", "coreutils"),
    ("git", "git"),
    // The observability tests: a real Prometheus (and promtool), headless Chromium for the
    // device map, and the IEEE MAC registry the map names vendors from. ieee-data has no
    // command; Debian's sh (dash) answers `command -v` for an existing file path too.
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
    ("chromium", "chromium"),
    ("/usr/share/ieee-data/oui.csv", "ieee-data"),
    // siem.rs: a real syslog collector, started with a configuration of its own.
    ("rsyslogd", "rsyslog"),
    // identity.rs: a MAC-only device leases its addresses from a real DHCP server and
    // client.
    ("dnsmasq", "dnsmasq-base"),
    ("busybox", "busybox"),
    // The service (tests/tests/service.rs): the daemon run with exactly the unit's
    // capabilities.
    ("setpriv", "util-linux"),
    // `cargo xtask package` (xtask/src/package.rs) and its test (tests/tests/package.rs):
    // the .deb built, installed, checked and purged; the unit checked by systemd's own
    // parser, the man page found by man.
    ("dpkg-deb", "dpkg"),
    ("dpkg", "dpkg"),
    ("dpkg-query", "dpkg"),
    ("strip", "binutils"),
    ("gzip", "gzip"),
    ("man", "man-db"),
    ("systemd-analyze", "systemd"),
];

/// tshark's postinst asks whether non-root users may capture; unanswered it would wait on a
/// terminal CI does not have.
const TSHARK_PRESEED: &str = "wireshark-common wireshark-common/install-setuid boolean false\n";

const BPFFS: &str = "/sys/fs/bpf";

pub fn run() -> Result<()> {
    let started = Instant::now();
    rust_src().context("nightly rust-src")?;
    bpf_linker().context("bpf-linker")?;
    debian_tools().context("test tools")?;
    bpffs().context("bpf filesystem")?;
    println!(
        "xtask setup: ready ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn present(what: &str) {
    println!("xtask setup: present, skipping: {what}");
}

fn installing(what: &str) {
    println!("xtask setup: INSTALLING: {what}");
}

/// `-Z build-std=core` for bpfel-unknown-none compiles core from source.
fn rust_src() -> Result<()> {
    let toolchains = cmd::output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with("nightly-")) {
        // Installing "nightly" today would bring a newer rustc and LLVM than the ones the
        // crate versions and bpf-linker here were chosen for, so this is for a human.
        bail!(
            "rustup has no `nightly` toolchain; the machines come with 1.97.0-nightly (2026-05-19)"
        );
    }
    let installed = cmd::output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if installed.lines().any(|l| l.trim() == "rust-src") {
        present("rust-src for the nightly toolchain");
        return Ok(());
    }
    installing("rust-src for the nightly toolchain");
    cmd::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

fn bpf_linker_version() -> Option<String> {
    let out = cmd::probe("bpf-linker", &["--version"])?;
    out.split_whitespace().nth(1).map(str::to_owned)
}

/// Where the libLLVM symlinks live. bpf-linker's RUNPATH points here, so it has to outlive
/// the build: a temporary folder would leave a linker that cannot start.
fn llvm_prefix() -> Result<PathBuf> {
    let data = match std::env::var_os("XDG_DATA_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".local/share")
        }
    };
    Ok(data.join("monitor-toolchain/llvm"))
}

fn bpf_linker() -> Result<()> {
    match bpf_linker_version() {
        Some(v) if v == BPF_LINKER_VERSION => {
            present(&format!("bpf-linker {BPF_LINKER_VERSION}"));
            return Ok(());
        }
        Some(v) => installing(&format!("bpf-linker {BPF_LINKER_VERSION} (found {v})")),
        None => installing(&format!(
            "bpf-linker {BPF_LINKER_VERSION} (missing, or cannot load its libLLVM)"
        )),
    }

    let sysroot = cmd::output(
        Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]),
    )?;
    let libllvm = find_libllvm(&Path::new(sysroot.trim()).join("lib"))?;
    let llvm_major = nightly_llvm_major()?;

    let prefix = llvm_prefix()?;
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let soname = libllvm
        .file_name()
        .context("libLLVM path has a file name")?
        .to_owned();
    // libLLVM.so is what the build links against; the soname link is what the loader
    // looks up through RUNPATH at run time.
    for link in [lib.join("libLLVM.so"), lib.join(&soname)] {
        replace_symlink(&libllvm, &link)?;
    }
    println!(
        "xtask setup: LLVM_PREFIX {} -> {}",
        prefix.display(),
        libllvm.display()
    );

    cmd::run(
        cmd::cargo()
            .current_dir(&prefix)
            .env("LLVM_PREFIX", &prefix)
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--force",
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{llvm_major}"),
            ]),
    )?;

    match bpf_linker_version() {
        Some(v) if v == BPF_LINKER_VERSION => Ok(()),
        Some(v) => bail!(
            "after installing, `bpf-linker --version` reports {v}; is another one earlier on PATH?"
        ),
        None => bail!("after installing, `bpf-linker --version` fails; is ~/.cargo/bin on PATH?"),
    }
}

/// The nightly's libLLVM shared object. Its file name is its soname. The toolchain also
/// ships a `libLLVM-N-rust-*.so` linker script naming it, which must not be linked to.
fn find_libllvm(dir: &Path) -> Result<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("libLLVM") && name.contains(".so") && is_elf(&path) {
            found.push(path);
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no libLLVM*.so* in {}; the nightly toolchain ships one",
            dir.display()
        ),
        many => bail!("more than one libLLVM in {}: {many:?}", dir.display()),
    }
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

fn nightly_llvm_major() -> Result<u32> {
    let verbose = cmd::output(Command::new("rustup").args(["run", "nightly", "rustc", "-vV"]))?;
    let version = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version:"))
        .context("`rustc +nightly -vV` names no LLVM version")?;
    let major = version.trim().split('.').next().unwrap_or_default();
    major
        .parse()
        .with_context(|| format!("LLVM version `{}`", version.trim()))
}

fn replace_symlink(target: &Path, link: &Path) -> Result<()> {
    match fs::remove_file(link) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", link.display())),
    }
    symlink(target, link)
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))
}

fn on_path(command: &str) -> bool {
    // `command -v` is how a shell would decide, including the sbin directories on root's PATH.
    Command::new("sh")
        .args(["-c", "command -v \"$1\" >/dev/null", "sh", command])
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> Result<bool> {
    Ok(cmd::output(Command::new("id").arg("-u"))?.trim() == "0")
}

fn debian_tools() -> Result<()> {
    let mut packages = Vec::new();
    for (command, package) in TOOLS {
        if on_path(command) {
            present(&format!("{command} ({package})"));
        } else if !packages.contains(package) {
            packages.push(*package);
        }
    }
    if packages.is_empty() {
        return Ok(());
    }
    installing(&format!("Debian packages {}", packages.join(" ")));
    if !is_root()? {
        bail!("installing {} needs root", packages.join(" "));
    }
    if packages.contains(&"tshark") {
        println!(
            "xtask: $ debconf-set-selections <<< '{}'",
            TSHARK_PRESEED.trim()
        );
        let mut child = Command::new("debconf-set-selections")
            .stdin(Stdio::piped())
            .spawn()
            .context("starting debconf-set-selections")?;
        // Dropping stdin after writing closes it, which ends debconf-set-selections' input.
        child
            .stdin
            .take()
            .context("debconf-set-selections stdin")?
            .write_all(TSHARK_PRESEED.as_bytes())
            .context("writing the tshark preseed")?;
        let status = child.wait().context("waiting for debconf-set-selections")?;
        if !status.success() {
            bail!("debconf-set-selections failed ({status})");
        }
    }
    cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .arg("update"),
    )?;
    cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            // Another apt run (unattended upgrades, a colleague) should delay us, not fail us.
            .args([
                "-o",
                "DPkg::Lock::Timeout=300",
                "install",
                "-y",
                "--no-install-recommends",
            ])
            .args(&packages),
    )?;
    let still_missing: Vec<_> = TOOLS
        .iter()
        .filter(|(c, _)| !on_path(c))
        .map(|(c, _)| *c)
        .collect();
    if !still_missing.is_empty() {
        bail!(
            "after installing, still not on PATH: {}",
            still_missing.join(" ")
        );
    }
    Ok(())
}

fn bpffs_mounted() -> Result<bool> {
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    Ok(mounts.lines().any(|l| {
        let fields: Vec<_> = l.split_whitespace().collect();
        fields.get(1) == Some(&BPFFS) && fields.get(2) == Some(&"bpf")
    }))
}

/// Pinned maps live under /sys/fs/bpf, which these machines do not always mount.
fn bpffs() -> Result<()> {
    if bpffs_mounted()? {
        present(&format!("bpf filesystem at {BPFFS}"));
        return Ok(());
    }
    installing(&format!("bpf filesystem at {BPFFS} (mounting)"));
    if !is_root()? {
        bail!("mounting the bpf filesystem needs root");
    }
    cmd::run(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))?;
    if !bpffs_mounted()? {
        bail!("{BPFFS} is still not a bpf mount after mounting");
    }
    Ok(())
}
