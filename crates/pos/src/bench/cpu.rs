//! CPU time of the processes a benchmark loads, read from `/proc` (Linux only): the platform,
//! PostgreSQL, RabbitMQ and the load generator itself, which all share the same cores.

use std::path::Path;

/// CPU seconds used so far by each group of processes (user and system, with the children they
/// reaped).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub platform: f64,
    pub postgres: f64,
    pub broker: f64,
    pub bench: f64,
}

impl CpuTimes {
    /// What the platform and its servers used, the load generator left out.
    pub fn servers(&self) -> f64 {
        self.platform + self.postgres + self.broker
    }

    pub fn total(&self) -> f64 {
        self.servers() + self.bench
    }

    /// The time used between `earlier` and `self`. A process that exited without a parent in
    /// its group to reap it takes its time with it, which could make a group's figure go
    /// negative; it is counted as zero instead.
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            platform: (self.platform - earlier.platform).max(0.0),
            postgres: (self.postgres - earlier.postgres).max(0.0),
            broker: (self.broker - earlier.broker).max(0.0),
            bench: (self.bench - earlier.bench).max(0.0),
        }
    }

    /// Times used over `period` as shares of one core.
    pub fn per_second(&self, period: std::time::Duration) -> CpuTimes {
        let seconds = period.as_secs_f64();
        CpuTimes {
            platform: self.platform / seconds,
            postgres: self.postgres / seconds,
            broker: self.broker / seconds,
            bench: self.bench / seconds,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Platform,
    Postgres,
    Broker,
    Bench,
}

/// Reads the groups' CPU times from `/proc`.
#[derive(Debug, Clone)]
pub struct CpuProbe {
    platform_pid: Option<u32>,
    own_pid: u32,
    ticks_per_second: f64,
}

impl CpuProbe {
    /// `None` where there is no `/proc` to read. The platform is `platform_pid` when given, else
    /// every process named `pos` or `pos-…` but this one.
    pub fn new(platform_pid: Option<u32>) -> Option<CpuProbe> {
        if !Path::new("/proc/self/stat").exists() {
            return None;
        }
        Some(CpuProbe { platform_pid, own_pid: std::process::id(), ticks_per_second: clock_ticks_per_second() })
    }

    pub fn sample(&self) -> CpuTimes {
        let mut ticks = [0u64; 4];
        for (pid, comm, used) in processes() {
            if let Some(group) = self.group_of(pid, &comm) {
                ticks[group as usize] += used;
            }
        }
        let seconds = |group: Group| ticks[group as usize] as f64 / self.ticks_per_second;
        CpuTimes {
            platform: seconds(Group::Platform),
            postgres: seconds(Group::Postgres),
            broker: seconds(Group::Broker),
            bench: seconds(Group::Bench),
        }
    }

    /// The processes counted as the platform now, `(pid, comm)`: shown at the start so that a
    /// stray `pos` process (another platform on the machine) is noticed.
    pub fn platform_processes(&self) -> Vec<(u32, String)> {
        processes()
            .filter(|(pid, comm, _)| self.group_of(*pid, comm) == Some(Group::Platform))
            .map(|(pid, comm, _)| (pid, comm))
            .collect()
    }

    fn group_of(&self, pid: u32, comm: &str) -> Option<Group> {
        if pid == self.own_pid {
            return Some(Group::Bench);
        }
        match self.platform_pid {
            Some(platform) if pid == platform => return Some(Group::Platform),
            Some(_) => {}
            // `pos` and the services' own binaries (`pos-intake`, …); not cargo's test binaries
            // (`pos_platform-…`), which other work on the machine may be running.
            None if comm == "pos" || comm.starts_with("pos-") => return Some(Group::Platform),
            None => {}
        }
        match comm {
            // The postmaster, its backends and background workers.
            "postgres" => Some(Group::Postgres),
            // RabbitMQ's Erlang VM and its helpers.
            "beam.smp" | "erl_child_setup" | "inet_gethost" | "epmd" => Some(Group::Broker),
            _ => None,
        }
    }
}

/// Every process now: its pid, comm and CPU ticks used (with reaped children). Processes that
/// exit while being read are skipped.
fn processes() -> impl Iterator<Item = (u32, String, u64)> {
    std::fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(|entry| {
        let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
        let line = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        let stat = parse_stat(&line)?;
        Some((pid, stat.comm.to_owned(), stat.ticks))
    })
}

#[derive(Debug, PartialEq, Eq)]
struct Stat<'a> {
    comm: &'a str,
    /// utime + stime + cutime + cstime, in clock ticks.
    ticks: u64,
}

/// Parses a `/proc/PID/stat` line. The comm (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so the numbered fields are counted from the last `)`.
fn parse_stat(line: &str) -> Option<Stat<'_>> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    if close < open {
        return None;
    }
    let comm = &line[open + 1..close];
    // Field 3 (state) is the first after the comm, so field n is at n - 3.
    let fields: Vec<&str> = line[close + 1..].split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|value| value.parse::<i64>().ok());
    let (utime, stime, cutime, cstime) = (field(14)?, field(15)?, field(16)?, field(17)?);
    let ticks = [utime, stime, cutime, cstime].iter().map(|&t| t.max(0) as u64).sum();
    Some(Stat { comm, ticks })
}

/// `sysconf(_SC_CLK_TCK)` without `unsafe`: the kernel hands it to every process in its
/// auxiliary vector (`AT_CLKTCK`). 100 (the value on every common Linux build) if unreadable.
fn clock_ticks_per_second() -> f64 {
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|auxv| auxv_value(&auxv, AT_CLKTCK))
        .filter(|&ticks| ticks > 0)
        .map_or(100.0, |ticks| ticks as f64)
}

const AT_CLKTCK: u64 = 17;

/// The value of `key` in an auxiliary vector: pairs of native words, ended by a zero key.
fn auxv_value(auxv: &[u8], key: u64) -> Option<u64> {
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |bytes: &[u8]| usize::from_ne_bytes(bytes.try_into().expect("a word")) as u64;
    auxv.chunks_exact(2 * WORD)
        .map(|pair| (word(&pair[..WORD]), word(&pair[WORD..])))
        .take_while(|&(k, _)| k != 0)
        .find(|&(k, _)| k == key)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fields 3–20 of a stat line with utime 1200, stime 340, cutime 56, cstime 7.
    const TAIL: &str = "S 1 1234 1234 0 -1 4194560 3456 0 0 0 1200 340 56 7 20 0 8 0 12345 123456789 2345";

    #[test]
    fn a_stat_line_gives_its_comm_and_its_ticks_with_the_reaped_children() {
        let line = format!("1234 (postgres) {TAIL}\n");
        assert_eq!(parse_stat(&line), Some(Stat { comm: "postgres", ticks: 1200 + 340 + 56 + 7 }));
    }

    #[test]
    fn a_comm_with_spaces_and_parentheses_is_read_to_the_last_parenthesis() {
        let line = format!("77 (a) (b c) ) {TAIL}");
        assert_eq!(parse_stat(&line), Some(Stat { comm: "a) (b c) ", ticks: 1603 }));
        let line = format!("78 (pos-intake) {TAIL}");
        assert_eq!(parse_stat(&line).map(|s| s.comm), Some("pos-intake"));
        let line = format!("79 () {TAIL}");
        assert_eq!(parse_stat(&line).map(|s| s.comm), Some(""));
    }

    #[test]
    fn a_stat_line_cut_short_or_garbled_is_refused() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("12 (pos) S 1 2 3"), None);
        assert_eq!(parse_stat("12 pos) ( S 1 2 3"), None);
        assert_eq!(parse_stat("12 (pos) S 1 1 1 0 -1 0 0 0 0 0 x 2 3 4"), None);
    }

    #[test]
    fn negative_children_times_count_as_zero() {
        let line = "5 (pos) S 1 1 1 0 -1 0 0 0 0 0 10 20 -1 -1 20";
        assert_eq!(parse_stat(line).map(|s| s.ticks), Some(30));
    }

    #[test]
    fn the_clock_tick_comes_from_the_auxiliary_vector() {
        let mut auxv = Vec::new();
        for (key, value) in [(6usize, 4096usize), (17, 250), (0, 0), (17, 999)] {
            auxv.extend_from_slice(&key.to_ne_bytes());
            auxv.extend_from_slice(&value.to_ne_bytes());
        }
        assert_eq!(auxv_value(&auxv, AT_CLKTCK), Some(250));
        assert_eq!(auxv_value(&auxv, 33), None, "the zero key ends the vector");
        assert_eq!(auxv_value(&auxv[..8], AT_CLKTCK), None);
    }

    #[test]
    fn groups_by_comm_and_this_process_is_the_bench() {
        let probe = CpuProbe { platform_pid: None, own_pid: 10, ticks_per_second: 100.0 };
        assert_eq!(probe.group_of(10, "pos"), Some(Group::Bench));
        assert_eq!(probe.group_of(11, "pos"), Some(Group::Platform));
        assert_eq!(probe.group_of(12, "pos-intake"), Some(Group::Platform));
        assert_eq!(probe.group_of(13, "pos_platform-3f"), None);
        assert_eq!(probe.group_of(14, "postgres"), Some(Group::Postgres));
        assert_eq!(probe.group_of(15, "beam.smp"), Some(Group::Broker));
        assert_eq!(probe.group_of(16, "epmd"), Some(Group::Broker));
        let probe = CpuProbe { platform_pid: Some(20), ..probe };
        assert_eq!(probe.group_of(20, "pos"), Some(Group::Platform));
        assert_eq!(probe.group_of(11, "pos"), None);
    }

    #[test]
    fn this_process_uses_some_cpu() {
        let Some(probe) = CpuProbe::new(None) else { return };
        // Spins until the kernel has charged a tick, within a bound a loaded machine still meets.
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        while probe.sample().bench == 0.0 && started.elapsed() < std::time::Duration::from_secs(10) {
            for _ in 0..1_000_000 {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
        }
        let used = probe.sample();
        assert!(used.bench > 0.0, "{used:?}");
        assert_eq!(used.total(), used.servers() + used.bench);
    }
}
