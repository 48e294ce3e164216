//! Compiles the BPF programs in bpf/ with clang for the `bpf` target; the object is embedded
//! in the kube-lb binary, so no prebuilt object is ever committed.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    // The bpf target has no libc headers of its own: asm/types.h comes from the host's
    // multiarch include directory.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("CARGO_CFG_TARGET_ARCH");
    let multiarch = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        other => panic!("kube-lb: no multiarch include directory known for {other}"),
    };
    let object = out.join("kube_lb.o");
    let status = Command::new(std::env::var("CLANG").unwrap_or_else(|_| "clang".into()))
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .args(["-c", "bpf/kube_lb.c", "-o"])
        .arg(&object)
        .status()
        .expect("running clang (Debian package clang) for the BPF programs");
    assert!(status.success(), "clang failed to compile bpf/kube_lb.c");
    for file in ["bpf/kube_lb.c", "bpf/lb.h", "bpf/sock.h", "bpf/nodeport.h"] {
        println!("cargo:rerun-if-changed={file}");
    }
    println!("cargo:rerun-if-env-changed=CLANG");
}
