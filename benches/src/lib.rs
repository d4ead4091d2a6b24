//! Benchmarks for beit-rs: criterion benches in `benches/`, the binaries in `src/bin/` that
//! the PyTorch comparisons in `pytorch/` run, and what those binaries share.

/// Peak resident memory of this process in MiB (Linux: VmHWM of /proc/self/status; `None`
/// elsewhere).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The median of `times` (the mean of the middle two for an even count); NaN when empty.
pub fn median(times: &[f64]) -> f64 {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    match t.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => t[n / 2],
        n => (t[n / 2 - 1] + t[n / 2]) / 2.0,
    }
}

pub mod fuzz;
