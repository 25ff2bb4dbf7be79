//! The benchmark suite's driver: SecAlloc against `System`, mimalloc and dhat-rs, over the
//! system allocator, over mimalloc and over its own heap (see BENCHMARKS.md).
//!
//! ```text
//! cargo bench --bench suite                       # default run, a few minutes on 2 cores
//! cargo bench --bench suite -- --scale 4 --rounds 7 --threads 1,2,4,8,16
//! cargo bench --bench suite -- --only churn,larson,xmalloc --threads 1,16
//! cargo bench --bench suite -- --plots docs       # also write the SVG plots into docs/
//! ```
//!
//! A process has one global allocator, so every workload lives in one binary per allocator,
//! all built from one module (`benches/workloads/`): `suite-system`, `suite-secalloc`,
//! `suite-dhat`, `suite-mimalloc`, `suite-secalloc-mimalloc`, `suite-secheap` and
//! `suite-secalloc-heap`. The
//! driver builds them (through the `cargo` that runs it), then for every workload runs each
//! configuration as a child process, interleaved (round 1: A B C …, round 2: B C … A, …), and
//! reports the median workload time, the median peak RSS (`ru_maxrss` of the child, from
//! `wait4`), and both as ratios to `System`. Every run of a workload must return the same
//! checksum, whatever the allocator: the driver stops if one does not.
//!
//! Options (`--name value`; the environment variable in brackets sets the default):
//! - `--scale N` (`SUITE_SCALE`, 1): multiplies the work of every workload;
//! - `--rounds N` (`SUITE_ROUNDS`, 5): runs per configuration (dhat-rs: at most 3, its runs
//!   are long); medians are over these;
//! - `--threads LIST` (`SUITE_THREADS`, `1,2`): thread counts of the multi-threaded
//!   workloads (for `xmalloc`, producer/consumer pairs);
//! - `--only LIST`: run only the workloads whose name contains one of these words
//!   (`wipe` selects the wipe sweep);
//! - `--configs LIST`: only these configurations (`system` always runs). Besides the default
//!   `full` (`SecAlloc::new()`: the own heap, metadata out of line), `tracking`
//!   (`SECALLOC_WIPE=0`), `wipe` (`SECALLOC_STACK_DEPTH=0`) and `dhat`, and the peers
//!   `mimalloc`, `full-mi` (SecAlloc over mimalloc), `full-system` (SecAlloc over `System`,
//!   the header layout), `secheap` (secalloc's own heap alone) and `full-heap` (SecAlloc
//!   over it on the header path, `with_inner(SecHeap)`), four more attribute costs: `bare`
//!   (neither stacks nor wipe), `minimal` (also no zeroing on allocation and no canaries: the
//!   live set, headers and statistics alone), `tracking-heap` and `wipe-heap` (as `tracking`
//!   and `wipe`, over the own heap); and `profile` (the defaults in heap-profile mode,
//!   `SECALLOC_PROFILE=1`). When `profile` and `dhat` both run, the workload's whole-heap
//!   figures (total blocks and bytes, peak bytes) each prints are compared in a table of
//!   their own (`secalloc::profile` defines how they should agree); and `quarantine`
//!   (`full-heap` with a 1 MiB quarantine, `SECALLOC_QUARANTINE_BYTES=1M`);
//! - `--bin-dir DIR`: use the prebuilt workload binaries (named as above) from DIR
//!   instead of building (for running on a machine without the toolchain);
//! - `--out DIR` (default `target/bench-suite`): where `results.json`, `table.md` and the
//!   plots go; `--plots DIR`: also copy the plots there.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The allocator compiled into a workload binary.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    System,
    SecAlloc,
    Dhat,
    Mimalloc,
    SecAllocMimalloc,
    SecHeap,
    SecAllocHeap,
    SecAllocSystem,
}

/// Every workload binary.
const ALL_KINDS: [Kind; 8] = [
    Kind::System,
    Kind::SecAlloc,
    Kind::Dhat,
    Kind::Mimalloc,
    Kind::SecAllocMimalloc,
    Kind::SecHeap,
    Kind::SecAllocHeap,
    Kind::SecAllocSystem,
];

impl Kind {
    fn target(self) -> &'static str {
        match self {
            Kind::System => "suite-system",
            Kind::SecAlloc => "suite-secalloc",
            Kind::Dhat => "suite-dhat",
            Kind::Mimalloc => "suite-mimalloc",
            Kind::SecAllocMimalloc => "suite-secalloc-mimalloc",
            Kind::SecHeap => "suite-secheap",
            Kind::SecAllocHeap => "suite-secalloc-heap",
            Kind::SecAllocSystem => "suite-secalloc-system",
        }
    }
}

/// One allocator configuration: a binary and the environment it runs with.
#[derive(Clone, Copy, Debug)]
struct Config {
    name: &'static str,
    kind: Kind,
    env: &'static [(&'static str, &'static str)],
}

const SYSTEM: Config = Config {
    name: "system",
    kind: Kind::System,
    env: &[],
};
const FULL: Config = Config {
    name: "full",
    kind: Kind::SecAlloc,
    env: &[],
};
const TRACKING: Config = Config {
    name: "tracking",
    kind: Kind::SecAlloc,
    env: &[("SECALLOC_WIPE", "0")],
};
const WIPE: Config = Config {
    name: "wipe",
    kind: Kind::SecAlloc,
    env: &[("SECALLOC_STACK_DEPTH", "0")],
};
const BARE: Config = Config {
    name: "bare",
    kind: Kind::SecAlloc,
    env: &[("SECALLOC_STACK_DEPTH", "0"), ("SECALLOC_WIPE", "0")],
};
/// SecAlloc with only the live set, headers and statistics: no stacks, no wipe, no zeroing,
/// no canaries (off by default; for attributing costs).
const MINIMAL: Config = Config {
    name: "minimal",
    kind: Kind::SecAlloc,
    env: &[
        ("SECALLOC_STACK_DEPTH", "0"),
        ("SECALLOC_WIPE", "0"),
        ("SECALLOC_ZERO_ON_ALLOC", "0"),
        ("SECALLOC_CANARY", "0"),
    ],
};
/// SecAlloc's defaults in profile mode (per-callsite totals, t-gmax, lifetimes; the DHAT
/// file written at exit to the driver's temporary file).
const PROFILE: Config = Config {
    name: "profile",
    kind: Kind::SecAlloc,
    env: &[("SECALLOC_PROFILE", "1")],
};
const DHAT: Config = Config {
    name: "dhat",
    kind: Kind::Dhat,
    env: &[],
};
/// mimalloc alone (the `mimalloc` crate): the fastest peer.
const MIMALLOC: Config = Config {
    name: "mimalloc",
    kind: Kind::Mimalloc,
    env: &[],
};
/// SecAlloc's defaults over mimalloc (`SecAlloc::with_inner(MiMalloc)`).
const FULL_MIMALLOC: Config = Config {
    name: "full-mi",
    kind: Kind::SecAllocMimalloc,
    env: &[],
};
/// secalloc's own heap alone (`SecHeap`), no tracking.
const SECHEAP: Config = Config {
    name: "secheap",
    kind: Kind::SecHeap,
    env: &[],
};
/// SecAlloc's defaults over its own heap on the header path (`SecAlloc::with_inner(SecHeap)`),
/// for comparison with `full` (the own heap with metadata out of line).
const FULL_HEAP: Config = Config {
    name: "full-heap",
    kind: Kind::SecAllocHeap,
    env: &[],
};
const TRACKING_HEAP: Config = Config {
    name: "tracking-heap",
    kind: Kind::SecAllocHeap,
    env: &[("SECALLOC_WIPE", "0")],
};
const WIPE_HEAP: Config = Config {
    name: "wipe-heap",
    kind: Kind::SecAllocHeap,
    env: &[("SECALLOC_STACK_DEPTH", "0")],
};
/// SecAlloc's defaults over the system allocator (`SecAlloc::with_inner(System)`: the header
/// layout, the default before the own heap).
const FULL_SYSTEM: Config = Config {
    name: "full-system",
    kind: Kind::SecAllocSystem,
    env: &[],
};

/// `full-heap` with a 1 MiB quarantine of freed slots per thread (the quarantine's cost).
const QUARANTINE: Config = Config {
    name: "quarantine",
    kind: Kind::SecAllocHeap,
    env: &[("SECALLOC_QUARANTINE_BYTES", "1M")],
};
const ALL_CONFIGS: [Config; 16] = [
    SYSTEM,
    FULL,
    PROFILE,
    TRACKING,
    WIPE,
    BARE,
    MINIMAL,
    DHAT,
    MIMALLOC,
    FULL_MIMALLOC,
    SECHEAP,
    FULL_HEAP,
    TRACKING_HEAP,
    WIPE_HEAP,
    FULL_SYSTEM,
    QUARANTINE,
];
/// Configurations left out of a run unless `--configs` names them.
const OPT_IN: [&str; 6] = [
    "bare",
    "minimal",
    "tracking-heap",
    "wipe-heap",
    "profile",
    "quarantine",
];

/// A line of the table: one workload at one thread count, under some configurations.
struct Row {
    workload: String,
    threads: usize,
    configs: Vec<Config>,
}

impl Row {
    fn label(&self) -> String {
        if is_threaded(&self.workload) {
            format!("{} {}T", self.workload, self.threads)
        } else {
            self.workload.clone()
        }
    }
}

fn is_threaded(workload: &str) -> bool {
    matches!(workload, "churn" | "larson" | "xmalloc" | "cache-scratch")
}

/// One child run's figures.
#[derive(Clone, Copy)]
struct Sample {
    /// Wall-clock nanoseconds of the workload.
    wall: u128,
    /// Process CPU nanoseconds of the workload (all threads).
    cpu: u128,
    ops: u64,
    maxrss_kib: i64,
}

struct Options {
    scale: u64,
    rounds: usize,
    threads: Vec<usize>,
    only: Vec<String>,
    configs: Vec<String>,
    bin_dir: Option<PathBuf>,
    out: PathBuf,
    plots: Option<PathBuf>,
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("suite: {msg}");
    std::process::exit(2);
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| fail(format!("{name}={v:?} is not a valid value"))),
        Err(_) => default,
    }
}

fn parse_list<T: std::str::FromStr>(what: &str, s: &str) -> Vec<T> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.trim()
                .parse()
                .unwrap_or_else(|_| fail(format!("bad value {x:?} in {what}")))
        })
        .collect()
}

fn options() -> Options {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut o = Options {
        scale: env_or("SUITE_SCALE", 1),
        rounds: env_or("SUITE_ROUNDS", 5),
        threads: parse_list(
            "SUITE_THREADS",
            &std::env::var("SUITE_THREADS").unwrap_or_else(|_| "1,2".into()),
        ),
        only: Vec::new(),
        configs: Vec::new(),
        bin_dir: None,
        out: manifest.join("target").join("bench-suite"),
        plots: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--bench" {
            continue; // passed by `cargo bench`
        }
        let mut value = || {
            args.next()
                .unwrap_or_else(|| fail(format!("{a} needs a value")))
        };
        match a.as_str() {
            "--scale" => o.scale = parse_list("--scale", &value())[0],
            "--rounds" => o.rounds = parse_list("--rounds", &value())[0],
            "--threads" => o.threads = parse_list("--threads", &value()),
            "--only" => o.only = parse_list("--only", &value()),
            "--configs" => o.configs = parse_list("--configs", &value()),
            "--bin-dir" => o.bin_dir = Some(value().into()),
            "--out" => o.out = value().into(),
            "--plots" => o.plots = Some(value().into()),
            _ => fail(format!(
                "unknown option {a:?} (see the top of benches/suite.rs)"
            )),
        }
    }
    if o.scale == 0 || o.rounds == 0 || o.threads.is_empty() || o.threads.contains(&0) {
        fail("--scale, --rounds and every thread count must be at least 1");
    }
    for c in &o.configs {
        if !ALL_CONFIGS.iter().any(|k| k.name == c) {
            let names: Vec<&str> = ALL_CONFIGS.iter().map(|k| k.name).collect();
            fail(format!(
                "unknown configuration {c:?} ({})",
                names.join(", ")
            ));
        }
    }
    o
}

/// Builds the workload binaries through cargo and returns their paths.
fn build_binaries() -> BTreeMap<&'static str, PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let kinds = ALL_KINDS;
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "bench",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    for k in kinds {
        cmd.args(["--bench", k.target()]);
    }
    eprintln!("suite: building the workload binaries");
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| fail(format!("cannot run cargo: {e}")));
    if !out.status.success() {
        fail("building the workload binaries failed");
    }
    let mut found = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let (Some(name), Some(exe)) = (msg["target"]["name"].as_str(), msg["executable"].as_str())
        else {
            continue;
        };
        if let Some(k) = kinds.iter().find(|k| k.target() == name) {
            found.insert(k.target(), PathBuf::from(exe));
        }
    }
    for k in kinds {
        if !found.contains_key(k.target()) {
            fail(format!("cargo did not report the {} binary", k.target()));
        }
    }
    found
}

fn prebuilt(dir: &Path) -> BTreeMap<&'static str, PathBuf> {
    ALL_KINDS
        .into_iter()
        .map(|k| {
            let p = dir.join(k.target());
            if !p.is_file() {
                fail(format!("{} not found", p.display()));
            }
            (k.target(), p)
        })
        .collect()
}

/// Runs one child; returns its stdout and figures.
fn run_child(
    exe: &Path,
    cfg: &Config,
    args: &[String],
    dhat_file: &Path,
) -> Result<(String, i64), String> {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("SECALLOC_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("SECALLOC_REPORT", "off")
        .env("SUITE_DHAT_FILE", dhat_file)
        .env("SECALLOC_PROFILE_FILE", dhat_file);
    for (k, v) in cfg.env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let mut stderr = child.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let _ = child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout);
    let err = err_reader.join().unwrap_or_default();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child, which
    // std's Child has not reaped (we never call wait on it).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child's; status and usage point to live locals.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    if pid < 0 {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!(
            "{} {} ({}) failed (wait status {status:#x}):\n{err}",
            exe.display(),
            args.join(" "),
            cfg.name
        ));
    }
    Ok((stdout, usage.ru_maxrss))
}

fn parse_result(stdout: &str, maxrss_kib: i64) -> Result<(Sample, u64), String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("result "))
        .ok_or_else(|| format!("no result line in {stdout:?}"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let bad = || format!("bad result line {line:?}");
    if f.len() != 5 {
        return Err(bad());
    }
    Ok((
        Sample {
            wall: f[1].parse().map_err(|_| bad())?,
            cpu: f[2].parse().map_err(|_| bad())?,
            ops: f[3].parse().map_err(|_| bad())?,
            maxrss_kib,
        },
        f[4].parse().map_err(|_| bad())?,
    ))
}

fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = v.len();
    v[n / 2]
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// dhat-rs runs take 20-50 times longer than the others: at most this many rounds of them.
const DHAT_ROUNDS: usize = 3;

/// Per-row, per-configuration medians.
struct Summary {
    label: String,
    workload: String,
    threads: usize,
    by_config: Vec<Stat>,
    /// Whole-heap figures the profilers reported for the workload (every run of each
    /// configuration that prints a `heap` line): blocks, bytes, peak bytes.
    heap: BTreeMap<&'static str, Vec<[u64; 3]>>,
}

/// Medians of one configuration's runs of one row.
#[derive(Clone)]
struct Stat {
    name: &'static str,
    /// Median process CPU time of the workload, ns (what the time ratios use).
    cpu: f64,
    /// Median wall-clock time, ns.
    wall: f64,
    /// Median throughput, operations per wall-clock second (what thread scaling uses).
    ops_s: f64,
    /// Median peak RSS, KiB.
    rss: f64,
    /// Median over rounds of CPU time / System's CPU time in the same round.
    paired: f64,
}

impl Summary {
    /// (CPU ns, ops per wall second, peak RSS KiB, paired ratio)
    fn get(&self, cfg: &str) -> Option<(f64, f64, f64, f64)> {
        self.by_config
            .iter()
            .find(|c| c.name == cfg)
            .map(|c| (c.cpu, c.ops_s, c.rss, c.paired))
    }
}

fn run_row(
    row: &Row,
    bins: &BTreeMap<&'static str, PathBuf>,
    opts: &Options,
    dhat_file: &Path,
) -> Summary {
    let args = vec![
        row.workload.clone(),
        row.threads.to_string(),
        opts.scale.to_string(),
    ];
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); row.configs.len()];
    let mut checksum: Option<(u64, &str)> = None;
    let mut heap = BTreeMap::new();
    for round in 0..opts.rounds {
        let n = row.configs.len();
        for k in 0..n {
            let ci = (k + round) % n;
            let cfg = &row.configs[ci];
            if cfg.kind == Kind::Dhat && round >= DHAT_ROUNDS {
                continue;
            }
            let (out, rss) = run_child(&bins[cfg.kind.target()], cfg, &args, dhat_file)
                .unwrap_or_else(|e| fail(e));
            let (s, sum) = parse_result(&out, rss).unwrap_or_else(|e| fail(e));
            if let Some(h) = parse_heap(&out) {
                heap.entry(cfg.name).or_insert_with(Vec::new).push(h);
            }
            match checksum {
                None => checksum = Some((sum, cfg.name)),
                Some((c, first)) if c != sum => fail(format!(
                    "{}: checksum {sum} under {} differs from {c} under {first}: the runs did different work",
                    row.label(),
                    cfg.name
                )),
                _ => {}
            }
            samples[ci].push(s);
        }
    }
    let _ = std::fs::remove_file(dhat_file);
    let sys_idx = row.configs.iter().position(|c| c.name == "system");
    let by_config = row
        .configs
        .iter()
        .zip(&samples)
        .map(|(cfg, ss)| {
            let cpu = median_f(ss.iter().map(|s| s.cpu as f64).collect());
            let wall = median_f(ss.iter().map(|s| s.wall as f64).collect());
            let ops_s = median_f(
                ss.iter()
                    .map(|s| s.ops as f64 / (s.wall as f64 / 1e9))
                    .collect(),
            );
            let rss = median_f(ss.iter().map(|s| s.maxrss_kib as f64).collect());
            let paired = match sys_idx {
                Some(si) => median_f(
                    ss.iter()
                        .zip(&samples[si])
                        .map(|(a, b)| a.cpu as f64 / b.cpu as f64)
                        .collect(),
                ),
                None => f64::NAN,
            };
            Stat {
                name: cfg.name,
                cpu,
                wall,
                ops_s,
                rss,
                paired,
            }
        })
        .collect();
    Summary {
        label: row.label(),
        workload: row.workload.clone(),
        threads: row.threads,
        by_config,
        heap,
    }
}

/// The `heap <blocks> <bytes> <peak bytes>` line a profiling workload prints, if any.
fn parse_heap(stdout: &str) -> Option<[u64; 3]> {
    let line = stdout.lines().find(|l| l.starts_with("heap "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse())
        .collect::<Result<_, _>>()
        .unwrap_or_else(|_| fail(format!("bad heap line {line:?}")));
    match f[..] {
        [a, b, c] => Some([a, b, c]),
        _ => fail(format!("bad heap line {line:?}")),
    }
}

/// dhat-rs and secalloc's profile mode on the same workload: total blocks and bytes must
/// agree exactly, the peak within the definition (see `secalloc::profile`). A workload whose
/// runs differ among themselves under one profiler (`maps`: its `HashMap` iteration order,
/// random per process, shapes the `BTreeMap` built from it) is shown as a range.
fn agreement_table(sums: &[Summary]) -> String {
    let mut t = String::new();
    let range = |v: &[[u64; 3]], k: usize| {
        let lo = v.iter().map(|h| h[k]).min().unwrap_or(0);
        let hi = v.iter().map(|h| h[k]).max().unwrap_or(0);
        if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}–{hi}")
        }
    };
    for s in sums {
        let (Some(d), Some(p)) = (s.heap.get("dhat"), s.heap.get("profile")) else {
            continue;
        };
        if t.is_empty() {
            t.push_str("| workload | dhat-rs blocks | profile blocks | dhat-rs bytes | profile bytes | dhat-rs peak | profile peak | agree |\n|---|---:|---:|---:|---:|---:|---:|---|\n");
        }
        let steady = |v: &Vec<[u64; 3]>| v.iter().all(|h| h == &v[0]);
        let verdict = if !steady(d) || !steady(p) {
            "runs differ under each profiler (not deterministic)".to_string()
        } else if d[0] == p[0] {
            "exactly".to_string()
        } else if d[0][..2] == p[0][..2] {
            format!("totals exactly; peak {:+}", p[0][2] as i64 - d[0][2] as i64)
        } else {
            "**no**".to_string()
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {verdict} |",
            s.label,
            range(d, 0),
            range(p, 0),
            range(d, 1),
            range(p, 1),
            range(d, 2),
            range(p, 2)
        );
    }
    t
}

/// The wipe sweep: 4-pass wipe against one memset, by size.
fn wipe_sweep(bins: &BTreeMap<&'static str, PathBuf>, opts: &Options) -> Vec<(usize, f64, f64)> {
    let mut per_size: BTreeMap<usize, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for _ in 0..opts.rounds {
        let (out, _) = run_child(
            &bins[Kind::System.target()],
            &SYSTEM,
            &["wipe-sweep".into(), "1".into(), opts.scale.to_string()],
            Path::new("/dev/null"),
        )
        .unwrap_or_else(|e| fail(e));
        for line in out.lines().filter(|l| l.starts_with("wipe ")) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(size), Some(memset), Some(wipe)) = (
                f.get(1).and_then(|x| x.parse().ok()),
                f.get(2).and_then(|x| x.parse().ok()),
                f.get(3).and_then(|x| x.parse().ok()),
            ) else {
                fail(format!("bad wipe line {line:?}"));
            };
            let e = per_size.entry(size).or_default();
            e.0.push(memset);
            e.1.push(wipe);
        }
    }
    per_size
        .into_iter()
        .map(|(size, (m, w))| (size, median(m), median(w)))
        .collect()
}

fn human_size(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

fn fmt_time(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else {
        format!("{:.1} ms", ns / 1e6)
    }
}

/// The main table, as Markdown.
fn table(sums: &[Summary], configs: &[&'static str]) -> String {
    let mut t = String::new();
    let shown: Vec<&str> = configs.iter().copied().filter(|c| *c != "system").collect();
    let dhat_col = shown.contains(&"dhat") && shown.contains(&"full");
    let dhat_profile_col = shown.contains(&"dhat") && shown.contains(&"profile");
    t.push_str("| workload | System CPU time | System peak RSS |");
    for c in &shown {
        let _ = write!(t, " {c} time× | {c} RSS× |");
    }
    if dhat_col {
        t.push_str(" dhat / full time |");
    }
    if dhat_profile_col {
        t.push_str(" dhat / profile time |");
    }
    t.push_str("\n|---|---:|---:|");
    for _ in &shown {
        t.push_str("---:|---:|");
    }
    if dhat_col {
        t.push_str("---:|");
    }
    if dhat_profile_col {
        t.push_str("---:|");
    }
    t.push('\n');
    for s in sums {
        let Some((sys_ns, _, sys_rss, _)) = s.get("system") else {
            continue;
        };
        let _ = write!(
            t,
            "| {} | {} | {:.1} MiB |",
            s.label,
            fmt_time(sys_ns),
            sys_rss / 1024.0
        );
        for c in &shown {
            match s.get(c) {
                Some((ns, _, rss, _)) => {
                    let _ = write!(t, " {:.2} | {:.2} |", ns / sys_ns, rss / sys_rss);
                }
                None => t.push_str(" – | – |"),
            }
        }
        if dhat_col {
            match (s.get("dhat"), s.get("full")) {
                (Some(d), Some(f)) => {
                    let _ = write!(t, " {:.1} |", d.0 / f.0);
                }
                _ => t.push_str(" – |"),
            }
        }
        if dhat_profile_col {
            match (s.get("dhat"), s.get("profile")) {
                (Some(d), Some(f)) => {
                    let _ = write!(t, " {:.1} |", d.0 / f.0);
                }
                _ => t.push_str(" – |"),
            }
        }
        t.push('\n');
    }
    t
}

/// Thread scaling: throughput at T threads over throughput at 1 thread, per config.
fn scaling_table(sums: &[Summary], threads: &[usize]) -> (String, Vec<ScalingLine>) {
    let mut lines = Vec::new();
    let mut t = String::new();
    let max_t = *threads.iter().max().unwrap_or(&1);
    if max_t < 2 {
        return (t, lines);
    }
    let _ = writeln!(
        t,
        "| workload | config | {} | {max_t}T/1T | relative to System |",
        threads
            .iter()
            .map(|n| format!("{n}T ops/s"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(t, "|---|---|{}---:|---:|", "---:|".repeat(threads.len()));
    for w in ["churn", "larson", "xmalloc", "cache-scratch"] {
        let mut sys_ratio = None;
        for cfg in ["system", "full", "tracking", "wipe"] {
            let pts: Vec<(usize, f64)> = threads
                .iter()
                .filter_map(|&n| {
                    sums.iter()
                        .find(|s| s.workload == w && s.threads == n)
                        .and_then(|s| s.get(cfg))
                        .map(|(_, ops, _, _)| (n, ops))
                })
                .collect();
            if pts.len() != threads.len() {
                continue;
            }
            let one = pts[0].1;
            let ratio = pts.last().unwrap().1 / one;
            if cfg == "system" {
                sys_ratio = Some(ratio);
            }
            let rel = sys_ratio.map_or(String::from("–"), |s| {
                format!("{:.0}%", 100.0 * ratio / s)
            });
            let _ = writeln!(
                t,
                "| {w} | {cfg} | {} | {ratio:.2} | {rel} |",
                pts.iter()
                    .map(|(_, o)| format!("{:.3e}", o))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            lines.push(ScalingLine {
                workload: w,
                config: cfg,
                points: pts.iter().map(|&(n, o)| (n, o / one)).collect(),
            });
        }
    }
    if lines.is_empty() {
        t.clear();
    }
    (t, lines)
}

struct ScalingLine {
    workload: &'static str,
    config: &'static str,
    points: Vec<(usize, f64)>,
}

const COLORS: [&str; 6] = [
    "#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Starts an SVG document of `width` × `height` on a white background, with `title`
/// centred at `title_x`.
fn svg_start(width: f64, height: f64, title_x: f64, title: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{title_x}" y="20" font-size="14" text-anchor="middle">{}</text>"#,
        esc(title)
    );
    s
}

/// Horizontal grouped bars of time ratio to System, log scale.
fn svg_ratios(sums: &[Summary], configs: &[&'static str], title: &str) -> String {
    let shown: Vec<&str> = configs.iter().copied().filter(|c| *c != "system").collect();
    let bar_h = 9.0;
    let group_h = bar_h * shown.len() as f64 + 8.0;
    let (left, right, top) = (170.0, 40.0, 50.0);
    let width = 900.0;
    let plot_w = width - left - right;
    let height = top + group_h * sums.len() as f64 + 60.0;
    let max_ratio = sums
        .iter()
        .flat_map(|s| {
            let sys = s.get("system").map(|x| x.0);
            s.by_config
                .iter()
                .filter_map(move |c| sys.map(|sys| c.cpu / sys))
        })
        .fold(2.0f64, f64::max);
    let (lo, hi) = (0.5f64.ln(), (max_ratio * 1.2).ln());
    let x = |r: f64| left + plot_w * (r.max(0.5).ln() - lo) / (hi - lo);
    let mut s = svg_start(width, height, width / 2.0, title);
    // Grid at 0.5, 1, 2, 5, 10, 20, 50, 100, ...
    let mut g = 0.5;
    let steps = [2.0, 2.5, 2.0];
    let mut i = 0;
    while g <= max_ratio * 1.2 {
        let gx = x(g);
        let stroke = if (g - 1.0f64).abs() < 1e-9 {
            "#000"
        } else {
            "#ddd"
        };
        let _ = writeln!(
            s,
            r#"<line x1="{gx:.1}" y1="{top}" x2="{gx:.1}" y2="{:.1}" stroke="{stroke}"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle">{g}×</text>"#,
            height - 50.0,
            height - 36.0
        );
        g *= steps[i % 3];
        i += 1;
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">time / System time (log scale)</text>"#,
        left + plot_w / 2.0,
        height - 20.0
    );
    for (ri, sm) in sums.iter().enumerate() {
        let y0 = top + group_h * ri as f64;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y0 + group_h / 2.0,
            esc(&sm.label)
        );
        let Some((sys, ..)) = sm.get("system") else {
            continue;
        };
        for (ci, c) in shown.iter().enumerate() {
            if let Some((ns, ..)) = sm.get(c) {
                let r = ns / sys;
                let y = y0 + 4.0 + bar_h * ci as f64;
                let _ = writeln!(
                    s,
                    r#"<rect x="{left}" y="{y:.1}" width="{:.1}" height="{}" fill="{}"><title>{} {}: {r:.2}×</title></rect>"#,
                    (x(r) - left).max(1.0),
                    bar_h - 1.0,
                    COLORS[ci % COLORS.len()],
                    esc(&sm.label),
                    c
                );
            }
        }
    }
    for (ci, c) in shown.iter().enumerate() {
        let lx = left + 10.0 + 110.0 * ci as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="30" width="10" height="10" fill="{}"/><text x="{}" y="39">{c}</text>"#,
            COLORS[ci % COLORS.len()],
            lx + 14.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Speed-up curves (throughput at T threads / at 1 thread) for System and SecAlloc.
fn svg_scaling(lines: &[ScalingLine], title: &str) -> String {
    let (width, height, left, right, top, bottom) = (720.0, 460.0, 60.0, 190.0, 40.0, 50.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let max_t = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .max()
        .unwrap_or(1) as f64;
    let max_y = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(max_t, f64::max)
        .ceil();
    let x = |t: f64| left + plot_w * (t - 1.0) / (max_t - 1.0).max(1.0);
    let y = |v: f64| top + plot_h * (1.0 - v / max_y);
    let mut s = svg_start(width, height, left + plot_w / 2.0, title);
    // Axes and ideal line.
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="#000"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="#000"/>"##,
        y(0.0),
        left + plot_w,
        y(0.0),
        y(0.0)
    );
    let _ = writeln!(
        s,
        r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#bbb" stroke-dasharray="2,3"/>"##,
        x(1.0),
        y(1.0),
        x(max_t),
        y(max_t)
    );
    let mut ticks: Vec<usize> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .collect();
    ticks.sort_unstable();
    ticks.dedup();
    for t in ticks {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t}</text>"#,
            x(t as f64),
            y(0.0) + 15.0
        );
    }
    let ystep = (max_y / 8.0).ceil().max(1.0);
    let mut v = 0.0;
    while v <= max_y {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{v}</text>"#,
            left - 5.0,
            y(v) + 4.0
        );
        v += ystep;
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">threads</text><text x="15" y="{}" transform="rotate(-90 15 {})" text-anchor="middle">throughput / 1-thread throughput</text>"#,
        left + plot_w / 2.0,
        height - 12.0,
        top + plot_h / 2.0,
        top + plot_h / 2.0
    );
    let workloads: Vec<&str> = {
        let mut w: Vec<&str> = lines.iter().map(|l| l.workload).collect();
        w.dedup();
        w
    };
    let mut legend_y = top;
    for l in lines
        .iter()
        .filter(|l| l.config == "system" || l.config == "full")
    {
        let wi = workloads.iter().position(|w| *w == l.workload).unwrap_or(0);
        let color = COLORS[wi % COLORS.len()];
        let dash = if l.config == "system" {
            r#" stroke-dasharray="6,4""#
        } else {
            ""
        };
        let pts: Vec<String> = l
            .points
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t as f64), y(v)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
            pts.join(" ")
        );
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}">{} – {}</text>"#,
            width - right + 10.0,
            width - right + 40.0,
            width - right + 45.0,
            legend_y + 4.0,
            l.workload,
            if l.config == "system" {
                "System"
            } else {
                "SecAlloc full"
            }
        );
        legend_y += 16.0;
    }
    s.push_str("</svg>\n");
    s
}

fn svg_wipe(sweep: &[(usize, f64, f64)]) -> String {
    // Efficiency: (4 × memset time) / wipe time, by size.
    let (width, height, left, right, top, bottom) = (640.0, 320.0, 60.0, 20.0, 40.0, 50.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let n = sweep.len().max(2) as f64;
    let x = |i: usize| left + plot_w * i as f64 / (n - 1.0);
    let y = |v: f64| top + plot_h * (1.0 - v / 1.25);
    let mut s = svg_start(
        width,
        height,
        width / 2.0,
        "4-pass wipe: bandwidth as a share of 4 × memset",
    );
    for v in [0.0, 0.25, 0.5, 0.75, 1.0, 1.25] {
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{:.0}%</text>"##,
            y(v),
            left + plot_w,
            y(v),
            left - 5.0,
            y(v) + 4.0,
            v * 100.0
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#C44E52" stroke-dasharray="5,4"/><text x="{}" y="{:.1}" fill="#C44E52">target 80% (≥ 64 KiB)</text>"##,
        y(0.8),
        left + plot_w,
        y(0.8),
        left + 5.0,
        y(0.8) - 4.0
    );
    let pts: Vec<String> = sweep
        .iter()
        .enumerate()
        .map(|(i, &(_, m, w))| format!("{:.1},{:.1}", x(i), y(4.0 * m / w)))
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#4C72B0" stroke-width="2"/>"##,
        pts.join(" ")
    );
    for (i, &(size, m, w)) in sweep.iter().enumerate() {
        let _ = writeln!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#4C72B0"><title>{}: {:.0}%</title></circle><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            x(i),
            y(4.0 * m / w),
            human_size(size),
            400.0 * m / w,
            x(i),
            height - bottom + 15.0,
            human_size(size)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">block size</text>"#,
        left + plot_w / 2.0,
        height - 12.0
    );
    s.push_str("</svg>\n");
    s
}

fn wanted(opts: &Options, name: &str) -> bool {
    opts.only.is_empty() || opts.only.iter().any(|w| name.contains(w.as_str()))
}

fn main() {
    let opts = options();
    let bins = match &opts.bin_dir {
        Some(d) => prebuilt(d),
        None => build_binaries(),
    };
    let pick = |list: &[Config]| -> Vec<Config> {
        list.iter()
            .copied()
            .filter(|c| {
                c.name == "system"
                    || (opts.configs.is_empty() && !OPT_IN.contains(&c.name))
                    || opts.configs.iter().any(|n| n == c.name)
            })
            .collect()
    };
    let secalloc_configs: Vec<Config> = pick(&ALL_CONFIGS)
        .into_iter()
        .filter(|c| c.kind != Kind::Dhat)
        .collect();
    let with_dhat = pick(&ALL_CONFIGS);

    let mut rows = Vec::new();
    for size in [8usize, 64, 512, 4096, 65536, 1 << 20, 4 << 20] {
        for order in ["fifo", "lifo"] {
            rows.push(Row {
                workload: format!("rt-{order}-{size}"),
                threads: 1,
                configs: secalloc_configs.clone(),
            });
        }
    }
    for w in ["churn", "larson", "xmalloc", "cache-scratch"] {
        for &t in &opts.threads {
            // dhat-rs on churn at one thread (its target); under its global lock the
            // multi-threaded runs would only measure that lock.
            let configs = if w == "churn" && t == 1 {
                with_dhat.clone()
            } else {
                secalloc_configs.clone()
            };
            rows.push(Row {
                workload: w.into(),
                threads: t,
                configs,
            });
        }
    }
    for w in ["json", "maps", "text", "ast"] {
        rows.push(Row {
            workload: w.into(),
            threads: 1,
            configs: with_dhat.clone(),
        });
    }
    rows.retain(|r| wanted(&opts, &r.workload));

    std::fs::create_dir_all(&opts.out)
        .unwrap_or_else(|e| fail(format!("cannot create {}: {e}", opts.out.display())));
    let dhat_file = opts.out.join(format!("dhat-{}.json", std::process::id()));
    let t0 = std::time::Instant::now();
    let mut sums = Vec::new();
    for row in &rows {
        eprint!("suite: {:<22}", row.label());
        let s = run_row(row, &bins, &opts, &dhat_file);
        let sys = s.get("system").map(|x| x.0).unwrap_or(f64::NAN);
        let mut line = format!("System {:>9}", fmt_time(sys));
        for st in &s.by_config {
            if st.name != "system" {
                let _ = write!(line, "  {} {:.2}x", st.name, st.cpu / sys);
            }
        }
        eprintln!("{line}");
        sums.push(s);
    }
    let sweep = if wanted(&opts, "wipe-sweep") {
        eprintln!("suite: wipe sweep");
        wipe_sweep(&bins, &opts)
    } else {
        Vec::new()
    };
    eprintln!("suite: done in {:.0} s", t0.elapsed().as_secs_f64());

    let configs: Vec<&'static str> = with_dhat.iter().map(|c| c.name).collect();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "scale {}, {} rounds (dhat-rs: {}), threads {:?}; medians of process CPU time and peak RSS; \
         ratios are to System in the same run.\n",
        opts.scale,
        opts.rounds,
        opts.rounds.min(DHAT_ROUNDS),
        opts.threads
    );
    md.push_str(&table(&sums, &configs));
    let agreement = agreement_table(&sums);
    if !agreement.is_empty() {
        md.push_str(
            "\nWhole-heap figures of the workload, dhat-rs against secalloc's profile mode:\n\n",
        );
        md.push_str(&agreement);
    }
    let (scaling_md, scaling_lines) = scaling_table(&sums, &opts.threads);
    if !scaling_md.is_empty() {
        md.push_str("\nThread scaling (median ops/s):\n\n");
        md.push_str(&scaling_md);
    }
    if !sweep.is_empty() {
        md.push_str("\nWipe sweep:\n\n| size | memset | 4-pass wipe | wipe / memset | 4 × memset time / wipe time |\n|---:|---:|---:|---:|---:|\n");
        for &(size, m, w) in &sweep {
            let _ = writeln!(
                md,
                "| {} | {:.1} ns ({:.1} GB/s) | {:.1} ns ({:.1} GB/s per pass) | {:.2}× | {:.0}% |",
                human_size(size),
                m,
                size as f64 / m,
                w,
                4.0 * size as f64 / w,
                w / m,
                400.0 * m / w
            );
        }
    }
    println!("\n{md}");

    let json = serde_json::json!({
        "scale": opts.scale,
        "rounds": opts.rounds,
        "threads": opts.threads,
        "rows": sums.iter().map(|s| serde_json::json!({
            "label": s.label,
            "workload": s.workload,
            "threads": s.threads,
            "configs": s.by_config.iter().map(|st| serde_json::json!({
                "config": st.name, "median_cpu_ns": st.cpu, "median_wall_ns": st.wall,
                "median_ops_per_wall_s": st.ops_s,
                "median_maxrss_kib": st.rss,
                "median_paired_cpu_ratio": if st.paired.is_nan() { serde_json::Value::Null } else { serde_json::json!(st.paired) },
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "wipe_sweep": sweep.iter().map(|&(size, m, w)| serde_json::json!({
            "size": size, "memset_ns": m, "wipe_ns": w,
        })).collect::<Vec<_>>(),
    });
    let write = |name: &str, text: &str| {
        let p = opts.out.join(name);
        std::fs::write(&p, text)
            .unwrap_or_else(|e| fail(format!("cannot write {}: {e}", p.display())));
        if let Some(dir) = &opts.plots {
            if name.ends_with(".svg") {
                std::fs::create_dir_all(dir)
                    .and_then(|_| std::fs::write(dir.join(name), text))
                    .unwrap_or_else(|e| fail(format!("cannot write into {}: {e}", dir.display())));
            }
        }
    };
    write(
        "results.json",
        &serde_json::to_string_pretty(&json).expect("serializes"),
    );
    write("table.md", &md);
    if !sums.is_empty() {
        let single: Vec<Summary> = sums
            .iter()
            .filter(|s| !is_threaded(&s.workload) || s.threads == 1)
            .map(|s| Summary {
                label: s.label.clone(),
                workload: s.workload.clone(),
                threads: s.threads,
                by_config: s.by_config.clone(),
                heap: s.heap.clone(),
            })
            .collect();
        write(
            "bench-ratio.svg",
            &svg_ratios(
                &single,
                &configs,
                "Time relative to System, by workload (1 thread)",
            ),
        );
    }
    if !scaling_lines.is_empty() {
        write(
            "bench-scaling.svg",
            &svg_scaling(
                &scaling_lines,
                "Thread scaling: System (dashed) vs SecAlloc full",
            ),
        );
    }
    if !sweep.is_empty() {
        write("bench-wipe.svg", &svg_wipe(&sweep));
    }
    eprintln!("suite: wrote {}", opts.out.display());
}
