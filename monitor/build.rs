//! Builds the XDP program (monitor-ebpf) for bpfel-unknown-none with the nightly
//! toolchain and bpf-linker, so that `cargo build -p monitor` embeds a fresh object.
//! `cargo xtask setup` installs what this needs on a new machine.

use std::{env, path::PathBuf, process::Command};

fn main() {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .expect("monitor/ sits in the workspace")
        .to_path_buf();
    let ebpf_dir = root.join("monitor-ebpf");
    for watched in [
        "monitor-ebpf/src",
        "monitor-ebpf/Cargo.toml",
        "monitor-ebpf/Cargo.lock",
        "monitor-common/src",
        "monitor-common/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target_dir = out_dir.join("ebpf");

    let mut cargo = Command::new("rustup");
    cargo
        .current_dir(&ebpf_dir)
        .args(["run", "nightly", "cargo", "build", "--release", "--locked"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's toolchain and flags must not leak into the nightly BPF build.
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTDOC",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "CARGO",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
        "CARGO_INCREMENTAL",
    ] {
        cargo.env_remove(var);
    }
    let status = cargo.status().unwrap_or_else(|e| {
        panic!("could not run `rustup run nightly cargo` to build monitor-ebpf ({e}); run `cargo xtask setup` first")
    });
    if !status.success() {
        panic!(
            "building the XDP program (monitor-ebpf) failed; if nightly rust-src or bpf-linker \
             is missing, `cargo xtask setup` installs them"
        );
    }
    let object = target_dir.join("bpfel-unknown-none/release/monitor-ebpf");
    println!("cargo:rustc-env=MONITOR_EBPF_OBJECT={}", object.display());
}
