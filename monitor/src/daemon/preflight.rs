//! Start-up checks, before anything is locked, loaded or pinned: the kernel has what the
//! datapath uses, the process may use it, and the pin directory is on a bpf filesystem.
//! Each feature is probed for real on a tiny object of its own
//! ([`crate::datapath::sys::probe`]), not guessed from the version, so a kernel that
//! backports a feature passes and one built without it fails, saying which feature, what
//! the datapath needs it for and since which Linux release it exists.

use std::path::{Path, PathBuf};

use crate::datapath::sys::probe;

/// Where the kernel describes its own types (CONFIG_DEBUG_INFO_BTF).
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// A kernel release as `uname -r` gives it (`6.18.44-fc-v1045` → 6.18.44).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion(pub u32, pub u32, pub u32);

impl KernelVersion {
    pub fn parse(release: &str) -> Option<KernelVersion> {
        let mut numbers = release
            .split(|c: char| !c.is_ascii_digit())
            .take(3)
            .map(|n| n.parse::<u32>().ok());
        let major = numbers.next()??;
        let minor = numbers.next()??;
        let patch = numbers.next().flatten().unwrap_or(0);
        Some(KernelVersion(major, minor, patch))
    }

    /// The running kernel's, from uname(2).
    pub fn running() -> Option<(String, KernelVersion)> {
        // SAFETY: uname writes into the zeroed struct we own.
        let mut name: libc::utsname = unsafe { std::mem::zeroed() };
        if unsafe { libc::uname(&mut name) } != 0 {
            return None;
        }
        // SAFETY: the kernel NUL-terminates `release`.
        let release = unsafe { std::ffi::CStr::from_ptr(name.release.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        KernelVersion::parse(&release).map(|v| (release, v))
    }
}

impl std::fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// A kernel feature the datapath uses.
#[derive(Clone, Copy, Debug)]
pub struct Feature {
    pub name: &'static str,
    /// The Linux release that brought it.
    pub since: KernelVersion,
    /// What the monitor needs it for.
    pub used_for: &'static str,
}

pub const RING_BUFFER: Feature = Feature {
    name: "BPF ring buffer maps",
    since: KernelVersion(5, 8, 0),
    used_for: "the datapath reports violations through one",
};
pub const BATCH_LOOKUP: Feature = Feature {
    name: "batch map lookups (BPF_MAP_LOOKUP_BATCH)",
    since: KernelVersion(5, 6, 0),
    used_for: "metrics read the per-device counters in batches",
};
pub const COARSE_CLOCK: Feature = Feature {
    name: "XDP programs calling bpf_ktime_get_coarse_ns",
    since: KernelVersion(5, 11, 0),
    used_for: "the XDP program times flows, requests and break-glass with it",
};
pub const XDP_LINKS: Feature = Feature {
    name: "bpf links for XDP (BPF_LINK_CREATE)",
    since: KernelVersion(5, 9, 0),
    used_for: "pinned links keep the program attached across restarts and let a restart \
               replace it without a gap",
};

/// What a probe found.
#[derive(Debug)]
pub enum Found {
    Yes,
    /// The kernel said no (its error).
    No(std::io::Error),
    /// Not probed; judged by the version.
    ByVersion,
}

/// What the checks concluded: errors stop the start, warnings are logged.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// What was checked and found, for the log.
    pub passed: Vec<&'static str>,
}

/// Judges the probes' results on a kernel of `version` (pure: testable on any host).
pub fn judge(version: Option<KernelVersion>, found: &[(Feature, Found)], btf: bool) -> Verdict {
    let mut verdict = Verdict::default();
    let kernel = version.map_or_else(|| "this kernel".to_owned(), |v| format!("Linux {v}"));
    for (feature, result) in found {
        let missing = match result {
            Found::Yes => None,
            Found::No(e) => Some(format!("the kernel refused the probe: {e}")),
            Found::ByVersion => match version {
                Some(v) if v >= feature.since => None,
                Some(_) => Some("older than the release that brought it".into()),
                None => {
                    verdict.warnings.push(format!(
                        "could not tell whether {kernel} has {} ({} needs Linux {} or later)",
                        feature.name, feature.used_for, feature.since
                    ));
                    continue;
                }
            },
        };
        match missing {
            None => verdict.passed.push(feature.name),
            Some(why) => verdict.errors.push(format!(
                "{kernel} lacks {} ({why}): {}; it needs Linux {} or later",
                feature.name, feature.used_for, feature.since
            )),
        }
    }
    if !btf {
        verdict.warnings.push(format!(
            "{VMLINUX_BTF} is missing (a kernel built without CONFIG_DEBUG_INFO_BTF): XDP \
             links were judged by the kernel version only"
        ));
    }
    verdict
}

/// Whether the kernel's own BTF names `type_name` (searched in its string table).
fn btf_has(btf: &[u8], type_name: &str) -> bool {
    let needle = format!("\0{type_name}\0");
    btf.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A capability `monitor run` needs, and why (the systemd unit keeps exactly these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    pub name: &'static str,
    pub bit: u32,
    pub needed_for: &'static str,
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What the daemon cannot start without (found by trying: each one removed makes the
/// start fail, `tests/tests/service.rs`). CAP_SYS_ADMIN stands in for CAP_BPF and
/// CAP_PERFMON, as the kernel lets it; it is needed itself only for `--netns` (setns)
/// and for mounting /sys/fs/bpf when nothing is mounted there.
pub const CAPABILITIES: [Capability; 3] = [
    Capability {
        name: "CAP_BPF",
        bit: CAP_BPF,
        needed_for: "creating the maps and loading the program (bpf(2))",
    },
    Capability {
        name: "CAP_NET_ADMIN",
        bit: CAP_NET_ADMIN,
        needed_for: "loading an XDP program and attaching it to the interfaces",
    },
    Capability {
        name: "CAP_PERFMON",
        bit: CAP_PERFMON,
        needed_for: "the verifier's leave to compare pointers as the XDP program does \
                     (without it: \"pointer comparison prohibited\")",
    },
];

/// The capabilities of [`CAPABILITIES`] missing from the effective set `effective`.
pub fn missing_capabilities(effective: u64) -> Vec<Capability> {
    let has = |bit: u32| effective & (1u64 << bit) != 0;
    CAPABILITIES
        .into_iter()
        .filter(|cap| {
            let covered = cap.bit != CAP_NET_ADMIN && has(CAP_SYS_ADMIN);
            !has(cap.bit) && !covered
        })
        .collect()
}

/// This process's effective capabilities (`CapEff` of /proc/self/status).
fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "this process lacks {}: `monitor run` needs root with CAP_BPF, CAP_NET_ADMIN and \
         CAP_PERFMON (and CAP_SYS_ADMIN for --netns); under systemd, see \
         CapabilityBoundingSet in the unit",
        .0.iter().map(|c| format!("{} ({})", c.name, c.needed_for)).collect::<Vec<_>>().join(", ")
    )]
    Capabilities(Vec<Capability>),
    #[error(
        "the kernel refuses bpf(2) to this process ({0}): `monitor run` needs root with \
         CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (and CAP_SYS_ADMIN for --netns); under \
         systemd, see CapabilityBoundingSet in the unit"
    )]
    NotPermitted(#[source] std::io::Error),
    #[error("this kernel cannot run the monitor's datapath:\n  {}", .0.join("\n  "))]
    Kernel(Vec<String>),
    #[error(
        "pin directory {0} is not on a bpf filesystem: programs and maps can only be pinned \
         there; mount one (`mount -t bpf bpf /sys/fs/bpf`; systemd does at boot) or give a \
         --pin-dir under /sys/fs/bpf"
    )]
    NotBpffs(PathBuf),
}

/// Probes the kernel; logs what passed and the warnings, fails with every error at once.
pub fn check_kernel() -> Result<(), PreflightError> {
    if let Some(effective) = effective_capabilities() {
        let missing = missing_capabilities(effective);
        if !missing.is_empty() {
            return Err(PreflightError::Capabilities(missing));
        }
    }
    if let Err(e) = probe::bpf_syscall() {
        return Err(if e.raw_os_error() == Some(libc::EPERM) {
            PreflightError::NotPermitted(e)
        } else {
            PreflightError::Kernel(vec![format!("bpf(2) does not work here: {e}")])
        });
    }
    let running = KernelVersion::running();
    let version = running.as_ref().map(|(_, v)| *v);
    let btf = std::fs::read(VMLINUX_BTF).ok();
    let found = |result: std::io::Result<()>| result.map_or_else(Found::No, |()| Found::Yes);
    let xdp_links = match &btf {
        Some(btf) if btf_has(btf, "bpf_xdp_link") => Found::Yes,
        Some(_) => Found::No(std::io::Error::other(
            "the kernel's BTF has no struct bpf_xdp_link",
        )),
        None => Found::ByVersion,
    };
    let verdict = judge(
        version,
        &[
            (RING_BUFFER, found(probe::ring_buffer())),
            (BATCH_LOOKUP, found(probe::batch_lookup())),
            (COARSE_CLOCK, found(probe::xdp_program_with_coarse_clock())),
            (XDP_LINKS, xdp_links),
        ],
        btf.is_some(),
    );
    for warning in &verdict.warnings {
        log::warn!(reason = "kernel-check"; "{warning}");
    }
    if !verdict.errors.is_empty() {
        return Err(PreflightError::Kernel(verdict.errors));
    }
    log::info!(
        "kernel {}: {}{} found",
        running
            .as_ref()
            .map_or("?", |(release, _)| release.as_str()),
        if btf.is_some() { "BTF, " } else { "" },
        verdict.passed.join(", ")
    );
    Ok(())
}

/// The pin directory (or, before it exists, the directory it will be made in) is on a
/// bpf filesystem.
pub fn check_pin_dir(pin_dir: &Path) -> Result<(), PreflightError> {
    let absolute = std::path::absolute(pin_dir).unwrap_or_else(|_| pin_dir.to_path_buf());
    let existing = absolute
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let Ok(c_path) = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()) else {
        return Err(PreflightError::NotBpffs(pin_dir.to_path_buf()));
    };
    // SAFETY: statfs writes into the zeroed struct we own.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    let on_bpffs = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } == 0
        && stat.f_type as i64 == BPF_FS_MAGIC;
    if on_bpffs {
        Ok(())
    } else {
        Err(PreflightError::NotBpffs(pin_dir.to_path_buf()))
    }
}

#[cfg(test)]
mod tests {
    use crate::daemon::preflight::*;

    #[test]
    fn kernel_releases_parse_with_their_suffixes() {
        assert_eq!(
            KernelVersion::parse("6.18.44-fc-v1045"),
            Some(KernelVersion(6, 18, 44))
        );
        assert_eq!(
            KernelVersion::parse("5.10.0-28-amd64"),
            Some(KernelVersion(5, 10, 0))
        );
        assert_eq!(KernelVersion::parse("6.1"), Some(KernelVersion(6, 1, 0)));
        assert_eq!(KernelVersion::parse("garbage"), None);
    }

    #[test]
    fn a_missing_feature_is_an_error_naming_it_its_use_and_its_release() {
        let verdict = judge(
            Some(KernelVersion(5, 4, 0)),
            &[
                (
                    RING_BUFFER,
                    Found::No(std::io::Error::from_raw_os_error(22)),
                ),
                (BATCH_LOOKUP, Found::Yes),
                (XDP_LINKS, Found::ByVersion),
            ],
            false,
        );
        assert_eq!(verdict.errors.len(), 2, "{verdict:?}");
        assert!(
            verdict.errors[0].starts_with("Linux 5.4 lacks BPF ring buffer maps")
                && verdict.errors[0].contains("violations")
                && verdict.errors[0].ends_with("it needs Linux 5.8 or later"),
            "{}",
            verdict.errors[0]
        );
        assert!(
            verdict.errors[1].contains("bpf links for XDP"),
            "{verdict:?}"
        );
        assert_eq!(verdict.passed, [BATCH_LOOKUP.name]);
        assert_eq!(verdict.warnings.len(), 1, "no BTF is said");
    }

    #[test]
    fn a_feature_the_kernel_has_passes_whatever_its_version_says() {
        let verdict = judge(
            Some(KernelVersion(4, 18, 0)),
            &[(RING_BUFFER, Found::Yes), (XDP_LINKS, Found::Yes)],
            true,
        );
        assert!(verdict.errors.is_empty() && verdict.warnings.is_empty());
        let verdict = judge(
            Some(KernelVersion(6, 1, 0)),
            &[(XDP_LINKS, Found::ByVersion)],
            true,
        );
        assert!(verdict.errors.is_empty(), "{verdict:?}");
    }

    #[test]
    fn each_missing_capability_is_named_and_sys_admin_covers_bpf_and_perfmon() {
        let all = CAPABILITIES.iter().fold(0u64, |set, c| set | 1 << c.bit);
        assert!(missing_capabilities(all).is_empty());
        for cap in CAPABILITIES {
            assert_eq!(missing_capabilities(all & !(1 << cap.bit)), [cap]);
        }
        let admin = 1 << CAP_SYS_ADMIN | 1 << CAP_NET_ADMIN;
        assert!(missing_capabilities(admin).is_empty());
        assert_eq!(
            missing_capabilities(1 << CAP_SYS_ADMIN)[0].name,
            "CAP_NET_ADMIN"
        );
    }

    #[test]
    fn the_kernel_btf_is_searched_by_whole_type_name() {
        let btf = b"\x9f\xeb\x01\x00....\0bpf_link\0bpf_xdp_link_info\0bpf_xdp_link\0";
        assert!(btf_has(btf, "bpf_xdp_link"));
        assert!(!btf_has(b"\0bpf_xdp_link_info\0", "bpf_xdp_link"));
    }

    /// This machine's kernel (see shared/TOOLCHAIN.md) has every feature, and the probes
    /// find them for real.
    #[test]
    fn the_probes_find_this_kernels_features() {
        check_kernel().unwrap_or_else(|e| panic!("{e}"));
        check_pin_dir(Path::new("/sys/fs/bpf/monitor-not-created"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(check_pin_dir(Path::new("/tmp/monitor-pins")).is_err());
    }
}
