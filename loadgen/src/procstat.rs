//! CPU time and resident memory of a process, from Linux's /proc.

use std::sync::OnceLock;

/// Reading /proc failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The file could not be read (the process is gone, or this is not Linux).
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file did not have the expected shape.
    #[error("unexpected format of {0}")]
    Format(String),
}

/// Which process to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    /// This process.
    SelfProcess,
    /// Another process.
    Other(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Pid::SelfProcess => "/proc/self".to_owned(),
            Pid::Other(p) => format!("/proc/{p}"),
        }
    }
}

fn read(path: String) -> Result<String, ProcError> {
    std::fs::read_to_string(&path).map_err(|source| ProcError::Read { path, source })
}

/// Clock ticks per second of /proc/PID/stat (`getconf CLK_TCK`; 100 on every common Linux).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds the process has used (all its threads, including exited ones).
pub fn cpu_seconds(pid: Pid) -> Result<f64, ProcError> {
    let path = format!("{}/stat", pid.dir());
    let stat = read(path.clone())?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| ProcError::Format(path.clone()))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<f64, ProcError> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| ProcError::Format(path.clone()))
    };
    // After the name: state(0) ppid(1) ... utime(11) stime(12).
    Ok((field(11)? + field(12)?) / clock_ticks())
}

/// Resident set size in bytes.
pub fn rss_bytes(pid: Pid) -> Result<u64, ProcError> {
    let path = format!("{}/status", pid.dir());
    let status = read(path.clone())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or(ProcError::Format(path))
}

/// Busy and stolen CPU seconds of the whole machine (all CPUs) since boot, from /proc/stat.
pub fn machine_cpu() -> Result<(f64, f64), ProcError> {
    let path = "/proc/stat".to_owned();
    let stat = read(path.clone())?;
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .ok_or_else(|| ProcError::Format(path.clone()))?
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let f = |i: usize| fields.get(i).copied().unwrap_or(0.0);
    let busy = f(0) + f(1) + f(2) + f(5) + f(6);
    Ok((busy / clock_ticks(), f(7) / clock_ticks()))
}

/// The machine's UDP counters (all sockets, IPv4 and IPv6 together), from /proc/net/snmp and
/// /proc/net/snmp6.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpCounters {
    /// Datagrams sent. On loopback every one is received by the server or by this process, so
    /// the difference over a window is the packets both sides exchanged.
    pub out_datagrams: u64,
    /// Datagrams dropped because a socket's receive buffer was full.
    pub receive_buffer_errors: u64,
}

/// Reads the machine's UDP counters.
pub fn udp_counters() -> Result<UdpCounters, ProcError> {
    let path = "/proc/net/snmp".to_owned();
    let snmp = read(path.clone())?;
    let mut rows = snmp.lines().filter_map(|l| l.strip_prefix("Udp: "));
    let (Some(names), Some(values)) = (rows.next(), rows.next()) else {
        return Err(ProcError::Format(path));
    };
    let field = |name: &str| -> Option<u64> {
        let i = names.split_whitespace().position(|n| n == name)?;
        values.split_whitespace().nth(i)?.parse().ok()
    };
    let mut c = UdpCounters {
        out_datagrams: field("OutDatagrams").ok_or_else(|| ProcError::Format(path.clone()))?,
        receive_buffer_errors: field("RcvbufErrors").unwrap_or(0),
    };
    // IPv6 sockets count separately (one "Name value" pair per line); absent without IPv6.
    if let Ok(snmp6) = read("/proc/net/snmp6".to_owned()) {
        for line in snmp6.lines() {
            let mut kv = line.split_whitespace();
            let (Some(k), Some(v)) = (kv.next(), kv.next().and_then(|v| v.parse::<u64>().ok()))
            else {
                continue;
            };
            match k {
                "Udp6OutDatagrams" => c.out_datagrams += v,
                "Udp6RcvbufErrors" => c.receive_buffer_errors += v,
                _ => {}
            }
        }
    }
    Ok(c)
}

/// CPU and memory of a process at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// CPU seconds used so far.
    pub cpu_s: f64,
    /// Resident bytes.
    pub rss: u64,
}

/// Samples `pid`; `None` when /proc cannot be read.
pub fn sample(pid: Pid) -> Option<Sample> {
    Some(Sample {
        cpu_s: cpu_seconds(pid).ok()?,
        rss: rss_bytes(pid).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_and_memory() {
        let s = sample(Pid::SelfProcess).unwrap();
        assert!(s.rss > 0);
        assert!(s.cpu_s >= 0.0);
        assert!(sample(Pid::Other(u32::MAX)).is_none());
    }
}
