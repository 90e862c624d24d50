//! The process's own figures, read from `/proc/self` (Linux); zeros where it cannot be read.

/// One reading of the process's resources.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProcStats {
    pub rss_bytes: u64,
    /// User plus system CPU time, whole seconds.
    pub cpu_seconds: u64,
    pub open_fds: u64,
    pub max_fds: u64,
}

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: u64 = 100;

pub fn read() -> ProcStats {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let open_fds = std::fs::read_dir("/proc/self/fd").map(|dir| dir.count() as u64).unwrap_or(0);
    ProcStats {
        rss_bytes: parse_rss_bytes(&status),
        cpu_seconds: parse_cpu_ticks(&stat) / USER_HZ,
        open_fds,
        max_fds: parse_max_fds(&limits),
    }
}

/// `utime + stime` (fields 14 and 15) of `/proc/self/stat`; the command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its closing `)`.
fn parse_cpu_ticks(stat: &str) -> u64 {
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, index 11 here.
    let field = |index: usize| fields.get(index).and_then(|value| value.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

/// `VmRSS:   1234 kB` of `/proc/self/status`.
fn parse_rss_bytes(status: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn parse_max_fds(limits: &str) -> u64 {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|values| values.split_whitespace().next())
        .and_then(|soft| soft.parse::<u64>().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cpu_ticks_counted_after_the_command_name() {
        let stat = "4242 (ring cast) (x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 130 0 0 20 0 9 0 100 200 300";
        assert_eq!(parse_cpu_ticks(stat), 380);
        assert_eq!(parse_cpu_ticks("garbage"), 0);
        assert_eq!(parse_cpu_ticks("1 (x) S 1"), 0);
    }

    #[test]
    fn test_rss_and_fd_limit() {
        assert_eq!(parse_rss_bytes("Name:\tringcast\nVmRSS:\t   2048 kB\nVmData: 1 kB\n"), 2048 * 1024);
        assert_eq!(parse_rss_bytes("Name:\tringcast\n"), 0);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1048576              1048576              files\n";
        assert_eq!(parse_max_fds(limits), 1_048_576);
        assert_eq!(parse_max_fds("Max open files unlimited unlimited files"), 0);
    }

    #[test]
    fn test_reads_this_process() {
        let stats = read();
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(stats.rss_bytes > 0);
            assert!(stats.open_fds > 0);
            assert!(stats.max_fds >= stats.open_fds);
        }
    }
}
