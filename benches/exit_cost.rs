//! What a process pays at exit for the leak check and report, against `System` in the same
//! run (see BENCHMARKS.md, "Exit cost").
//!
//! ```text
//! cargo test --bench exit_cost                   # 15 rounds, children in a debug build
//! cargo bench --bench exit_cost -- --rounds 31 --scale 4 --release   # bench profile, fat LTO
//! ```
//!
//! By default the children are built in the dev profile (what `cargo test` runs, with the
//! workspace's `[profile.dev.package.*]` overrides); `--release` builds them in the bench
//! profile (fat LTO) instead.
//!
//! It builds the suite's workload binaries `suite-system` and `suite-secalloc` and runs the
//! workloads `exit-clean` (20 000 small blocks live at exit, all reachable: nothing is printed)
//! and `exit-leak` (the same, 100 of them lost: a report is printed) as child processes,
//! interleaved, in three configurations: `system`, `secalloc` with `SECALLOC_REPORT=off` (no
//! leak check at exit) and `secalloc` as it ships. For each run it takes the child's CPU time
//! from `wait4` and subtracts the workload's own CPU time (which the child prints): what is
//! left is start-up plus exit. Medians over the rounds; the exit cost of the check is the
//! difference to the `SECALLOC_REPORT=off` run, and "beyond one scan" subtracts the time one
//! linear read of the `System` process's writable memory takes (measured in the `system`
//! child with `secalloc::__bench::scan_writable_memory`, the root scan's own loop, and not
//! counted in that child's start-up and exit).

use std::path::PathBuf;
use std::process::{Command, Stdio};

const TARGETS: [&str; 2] = ["suite-system", "suite-secalloc"];

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("exit_cost: {msg}");
    std::process::exit(1);
}

fn build(release: bool) -> Vec<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        cmd.args(["bench", "--no-run"]);
    } else {
        cmd.arg("build");
    }
    cmd.arg("--message-format=json-render-diagnostics");
    for t in TARGETS {
        cmd.args(["--bench", t]);
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| fail(format!("cannot run cargo: {e}")));
    if !out.status.success() {
        fail("building the workload binaries failed");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    TARGETS
        .iter()
        .map(|t| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == *t)
                .find_map(|m| m["executable"].as_str().map(PathBuf::from))
                .unwrap_or_else(|| fail(format!("cargo did not report {t}")))
        })
        .collect()
}

/// Environment variables of a configuration.
type Env = &'static [(&'static str, &'static str)];

/// One run: (child CPU ns from wait4, workload CPU ns, scan bytes, scan ns, stderr bytes).
type Sample = (f64, f64, u64, f64, usize);

fn run(exe: &PathBuf, workload: &str, scale: u64, env: Env) -> Sample {
    let mut cmd = Command::new(exe);
    cmd.args([workload, "1", &scale.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("SECALLOC_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| fail(format!("cannot start {}: {e}", exe.display())));
    let pid = child.id() as libc::pid_t;
    // Read both pipes to the end, then reap the child ourselves to get its rusage.
    let mut child = child;
    let mut err = child.stderr.take().expect("piped");
    let errs = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let mut out = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stdout.take().expect("piped"), &mut out);
    let errs = errs.join().unwrap_or_default();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: our own unreaped child; status and usage point to live locals.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } < 0 {
        fail(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        fail(format!(
            "{} {workload} failed: {}",
            exe.display(),
            String::from_utf8_lossy(&errs)
        ));
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e9 + t.tv_usec as f64 * 1e3;
    let total = tv(usage.ru_utime) + tv(usage.ru_stime);
    // Set only for `system` runs; their reference scan is not part of start-up or exit.
    let mut workload_cpu = f64::NAN;
    let (mut scan_bytes, mut scan_ns) = (0, f64::NAN);
    for l in out.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f.first() {
            Some(&"result") if f.len() == 5 => workload_cpu = f[2].parse().unwrap_or(f64::NAN),
            Some(&"scan") if f.len() == 3 => {
                scan_bytes = f[1].parse().unwrap_or(0);
                scan_ns = f[2].parse().unwrap_or(f64::NAN);
            }
            _ => {}
        }
    }
    if !scan_ns.is_nan() {
        workload_cpu += scan_ns;
    }
    if workload_cpu.is_nan() {
        fail(format!(
            "no result line from {} {workload}: {out}",
            exe.display()
        ));
    }
    (total, workload_cpu, scan_bytes, scan_ns, errs.len())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut rounds = 15;
    let mut scale = 1;
    let mut release = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--release" {
            release = true;
            continue;
        }
        let mut val = || {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| fail(format!("{a} needs a whole number")))
        };
        match a.as_str() {
            "--rounds" => rounds = val().max(1) as usize,
            "--scale" => scale = val().max(1),
            "--bench" => {}
            other => fail(format!("unknown option {other}")),
        }
    }
    let bins = build(release);
    let configs: [(&str, usize, Env); 3] = [
        ("system", 0, &[("EXIT_COST_SCAN", "1")]),
        (
            "secalloc, SECALLOC_REPORT=off",
            1,
            &[("SECALLOC_REPORT", "off")],
        ),
        ("secalloc", 1, &[]),
    ];
    println!(
        "exit cost, {} build, {rounds} rounds, scale {scale} (medians; CPU ms = user + system)\n",
        if release {
            "bench-profile"
        } else {
            "dev-profile"
        }
    );
    println!("| workload | configuration | process CPU ms | start-up + exit CPU ms | report bytes | writable memory (System) | one scan of it, ms |");
    println!("|---|---|---|---|---|---|---|");
    for workload in ["exit-clean", "exit-leak"] {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); configs.len()];
        for r in 0..rounds {
            for k in 0..configs.len() {
                let c = (k + r) % configs.len();
                let (_, bin, env) = configs[c];
                samples[c].push(run(&bins[bin], workload, scale, env));
            }
        }
        let mut outside = Vec::new();
        let sys_scan_ms = median(samples[0].iter().map(|s| s.3 / 1e6).collect());
        let sys_bytes = samples[0][0].2;
        for (c, s) in samples.iter().enumerate() {
            let total = median(s.iter().map(|x| x.0 / 1e6).collect());
            let out = median(s.iter().map(|x| (x.0 - x.1) / 1e6).collect());
            outside.push(out);
            println!(
                "| {workload} | {} | {total:.2} | {out:.2} | {} | {:.1} MiB | {sys_scan_ms:.2} |",
                configs[c].0,
                s[0].4,
                sys_bytes as f64 / (1 << 20) as f64
            );
        }
        println!(
            "| {workload} | **exit check and report** (secalloc − REPORT=off) | | {:.2} | | | beyond one scan: {:.2} |",
            outside[2] - outside[1],
            outside[2] - outside[1] - sys_scan_ms
        );
        println!(
            "| {workload} | **secalloc − system** | | {:.2} | | | |",
            outside[2] - outside[0]
        );
    }
}
