//! Server (and harness) resource use from /proc.

/// Resident set size of a process in bytes (`VmRSS` of /proc/PID/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User + system CPU seconds a process used so far.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    parse_stat_cpu(&stat)
}

pub fn parse_stat_cpu(stat: &str) -> Option<f64> {
    // Fields after the parenthesized command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((utime + stime) / ticks)
}

/// Write system calls (write, writev: what sockets are written with here) a process made
/// so far (`syscw` of /proc/PID/io; socket reads use recv, which it does not count).
pub fn write_syscalls(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    parse_field(&io, "syscw:")
}

/// Context switches (voluntary and not) of all threads of a process so far: how often its
/// threads slept and were woken.
pub fn context_switches(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else { continue };
        total += parse_field(&status, "voluntary_ctxt_switches:").unwrap_or(0);
        total += parse_field(&status, "nonvoluntary_ctxt_switches:").unwrap_or(0);
    }
    Some(total)
}

fn parse_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].trim().parse().ok()
}

/// Bytes a process passed to write calls so far, sockets included (`wchar` of /proc/PID/io).
pub fn written_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    parse_field(&io, "wchar:")
}

/// Raises the soft open-files limit to the hard one.
pub fn raise_nofile_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a valid pointer to an rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    limit.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_proc_files() {
        assert_eq!(parse_vm_rss("Name:\tx\nVmRSS:\t  1234 kB\n"), Some(1234 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 200 100 0 0 20 0";
        let cpu = parse_stat_cpu(stat).unwrap();
        assert!(cpu > 0.0);
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
        assert!(cpu_seconds(None).is_some());
        let io = "rchar: 10\nwchar: 20\nsyscr: 3\nsyscw: 4\n";
        assert_eq!(parse_field(io, "syscw:"), Some(4));
        assert_eq!(
            parse_field("voluntary_ctxt_switches:\t7\nnonvoluntary_ctxt_switches:\t2\n", "nonvoluntary_ctxt_switches:"),
            Some(2)
        );
        assert!(write_syscalls(std::process::id()).is_some());
        assert!(context_switches(std::process::id()).unwrap() > 0);
        assert_eq!(parse_field(io, "wchar:"), Some(20));
        assert!(written_bytes(std::process::id()).is_some());
    }
}
