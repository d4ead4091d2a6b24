//! With the `cuda` feature: compiles every `kernels/*.cu` to PTX in OUT_DIR with nvcc.
//!
//! nvcc is `$BEIT_NVCC`, else `$CUDA_PATH/bin/nvcc`, else `nvcc` on PATH (`source
//! scripts/cuda-env.sh` installs nvcc 13.0 and sets `BEIT_NVCC`). The PTX targets
//! `compute_$CUDA_COMPUTE_CAP` (default 80: runs on Ampere, Hopper and later by JIT). Kernel
//! warnings are errors. Without the feature nothing is compiled.

use std::path::{Path, PathBuf};
use std::process::Command;

fn nvcc() -> PathBuf {
    if let Some(p) = std::env::var_os("BEIT_NVCC") {
        return PathBuf::from(p);
    }
    if let Some(base) = std::env::var_os("CUDA_PATH") {
        let p = Path::new(&base).join("bin/nvcc");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("nvcc")
}

fn main() {
    for var in ["BEIT_NVCC", "CUDA_PATH", "CUDA_COMPUTE_CAP"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=kernels");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    let cap = cap.trim().trim_start_matches("sm_").trim_start_matches("compute_").replace('.', "");
    if cap.is_empty() || !cap.chars().all(|c| c.is_ascii_digit()) {
        panic!("CUDA_COMPUTE_CAP={cap:?}: expected a compute capability such as 80 or 90");
    }
    let nvcc = nvcc();
    let mut sources: Vec<PathBuf> = std::fs::read_dir("kernels")
        .expect("backends/cuda/kernels is readable")
        .map(|e| e.expect("kernels entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    sources.sort();
    for src in sources {
        let name = src.file_stem().and_then(|s| s.to_str()).expect("utf-8 kernel file name");
        let ptx = out.join(format!("{name}.ptx"));
        let status = Command::new(&nvcc)
            .args(["-ptx", "-std=c++17", "-Werror", "all-warnings", &format!("-arch=compute_{cap}"), "-o"])
            .arg(&ptx)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run nvcc ({}): {e}. The `cuda` feature compiles kernels with nvcc 13.0: run \
                     `source scripts/cuda-env.sh` (installs it from PyPI and sets BEIT_NVCC), or set BEIT_NVCC \
                     or CUDA_PATH to a CUDA toolkit",
                    nvcc.display()
                )
            });
        if !status.success() {
            panic!("nvcc failed on {} ({status})", src.display());
        }
        check_isa(&ptx);
    }
}

/// Warn when the PTX needs a newer driver than CUDA 13.0's (ISA 9.0): nvcc 13.5 emits 9.5.
fn check_isa(ptx: &Path) {
    let text = std::fs::read_to_string(ptx).expect("nvcc wrote the PTX");
    let version = text.lines().find_map(|l| l.strip_prefix(".version ")).unwrap_or("?").trim().to_string();
    let parsed: Option<(u32, u32)> =
        version.split_once('.').and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
    if parsed.is_none_or(|v| v > (9, 0)) {
        println!(
            "cargo:warning={}: PTX ISA {version} needs a driver newer than CUDA 13.0's; use nvcc 13.0.x \
             (scripts/cuda-env.sh) for drivers of the 580 series",
            ptx.display()
        );
    }
}
