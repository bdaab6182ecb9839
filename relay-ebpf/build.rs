//! Cargo does not know that the program's link step runs `bpf-linker`: rebuild when that
//! binary changes (a reinstall against another LLVM, say). Without one, nothing to watch:
//! relay's build script decides what a missing linker means.

fn main() {
    if let Ok(bpf_linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
