//! With the `cuda` feature: compiles every `kernels/*.cu` to PTX in OUT_DIR with nvcc.
//! With the `cuda-sim` feature: compiles the same files with the host C++ compiler against
//! `kernels/sim/cuda_sim.h` into a static library with the simulator's runtime (see
//! [`sim`]).
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
    let sources = kernel_sources();
    #[cfg(feature = "cuda-sim")]
    sim::build(&sources);
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        ptx(&sources);
    }
}

/// `kernels/*.cu`, sorted.
fn kernel_sources() -> Vec<PathBuf> {
    let dir = Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("kernels");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("backends/cuda/kernels is readable")
        .map(|e| e.expect("kernels entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    sources.sort();
    sources
}

/// Every kernel file to PTX with nvcc.
fn ptx(sources: &[PathBuf]) {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    let cap = cap.trim().trim_start_matches("sm_").trim_start_matches("compute_").replace('.', "");
    if cap.is_empty() || !cap.chars().all(|c| c.is_ascii_digit()) {
        panic!("CUDA_COMPUTE_CAP={cap:?}: expected a compute capability such as 80 or 90");
    }
    let nvcc = nvcc();
    for src in sources {
        let name = src.file_stem().and_then(|s| s.to_str()).expect("utf-8 kernel file name");
        let ptx = out.join(format!("{name}.ptx"));
        let status = Command::new(&nvcc)
            .args(["-ptx", "-std=c++17", "-Werror", "all-warnings", &format!("-arch=compute_{cap}"), "-o"])
            .arg(&ptx)
            .arg(src)
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

/// The simulator build: each `kernels/<m>.cu` becomes one C++ translation unit in OUT_DIR,
/// `sim_<m>.cpp`, that includes `cuda_sim.h`, then the kernel file inside namespace
/// `beit_sim_<m>` (so same-named helpers of two files stay apart, as in two PTX modules),
/// then a table of its kernels. The kernel names come from running the preprocessor with
/// `-DBEIT_SIM_SCAN`, where `__global__` expands to a marker, so names made by macros are
/// found too. `sim_registry.cpp` lists the modules' tables (runtime.cpp looks kernels up in
/// it). All of it and
/// `kernels/sim/runtime.cpp` go into one static library, with `kernels/sim/selftest.cu`
/// (module `selftest`: the simulator's own test kernels).
#[cfg(feature = "cuda-sim")]
mod sim {
    use std::fmt::Write;
    use std::path::{Path, PathBuf};

    const MARK: &str = "__beit_sim_kernel__";

    pub fn build(sources: &[PathBuf]) {
        let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let sim = sources[0].parent().expect("kernels folder").join("sim");
        let header = sim.join("cuda_sim.h");
        let mut build = cc::Build::new();
        build
            .cpp(true)
            .std("c++17")
            .opt_level(2)
            .debug(false)
            .warnings(true)
            .warnings_into_errors(true)
            .flag("-Wno-unused-parameter")
            .include(&sim);
        let mut registry = String::from("#include \"cuda_sim.h\"\n");
        let mut table = String::new();
        for src in sources.iter().chain([&sim.join("selftest.cu")]) {
            let module = src.file_stem().and_then(|s| s.to_str()).expect("utf-8 kernel file name");
            let names = kernel_names(&build, &header, src);
            assert!(!names.is_empty(), "cuda-sim: no kernels found in {}", src.display());
            let ns = format!("beit_sim_{module}");
            let mut tu = format!("#include \"cuda_sim.h\"\nnamespace {ns} {{\n#include \"{}\"\n}}\n", src.display());
            writeln!(tu, "extern \"C\" const unsigned {ns}_count = {};", names.len()).unwrap();
            writeln!(tu, "extern \"C\" const beit_sim::Entry {ns}_kernels[] = {{").unwrap();
            for n in &names {
                writeln!(tu, "    BEIT_SIM_ENTRY({ns}, {n}),").unwrap();
            }
            tu.push_str("};\n");
            let file = out.join(format!("sim_{module}.cpp"));
            std::fs::write(&file, tu).expect("write the simulator's translation unit");
            build.file(&file);
            writeln!(registry, "extern \"C\" const unsigned {ns}_count;\nextern \"C\" const beit_sim::Entry {ns}_kernels[];")
                .unwrap();
            writeln!(table, "    {{\"{module}\", {ns}_kernels, &{ns}_count}},").unwrap();
        }
        writeln!(registry, "extern \"C\" const beit_sim::Module beit_sim_modules[] = {{\n{table}}};").unwrap();
        writeln!(registry, "extern \"C\" const unsigned beit_sim_module_count = {};", sources.len() + 1).unwrap();
        let file = out.join("sim_registry.cpp");
        std::fs::write(&file, registry).expect("write the simulator's registry");
        build.file(&file).file(sim.join("runtime.cpp")).compile("beit_cuda_sim");
    }

    /// The `extern "C" __global__` functions of `src`, in order of definition.
    fn kernel_names(build: &cc::Build, header: &Path, src: &Path) -> Vec<String> {
        let out = build
            .get_compiler()
            .to_command()
            .args(["-E", "-P", "-x", "c++", "-DBEIT_SIM_SCAN", "-include"])
            .arg(header)
            .arg(src)
            .output()
            .unwrap_or_else(|e| panic!("cuda-sim: cannot run the C++ preprocessor on {}: {e}", src.display()));
        assert!(
            out.status.success(),
            "cuda-sim: preprocessing {} failed:\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        text.split(MARK)
            .skip(1)
            .map(|rest| {
                let rest = rest.trim_start().strip_prefix("void").unwrap_or_else(|| {
                    panic!("cuda-sim: a kernel in {} does not return void: {}", src.display(), &rest[..rest.len().min(60)])
                });
                rest.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
            })
            .collect()
    }
}
