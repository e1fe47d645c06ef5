//! Open-file limits for many connections, set up before the runtime starts any thread. Owns the
//! process's `RLIMIT_NOFILE` and file-table size; touches nothing else.
//!
//! Each connection is a file descriptor. Two things get in the way of a thousand of them:
//! - the soft limit (often 1,024), so it is raised to the hard limit, as Go programs do;
//! - Linux grows a process's file table by doubling, and in a process with several threads each
//!   growth waits for an RCU grace period (`synchronize_rcu`): 10-20 ms during which no socket can
//!   be opened. At -c 1000 that was three stalls while the first connections opened. Growing the
//!   table once, while the process has a single thread, costs no wait.

/// What [`prepare`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fds {
    /// The soft limit on open files after raising it (unknown: `None`).
    pub limit: Option<u64>,
}

/// Raises the soft open-file limit to the hard limit and grows the file table to hold `wanted`
/// descriptors (or as many as the limit allows). Must run before any thread is started.
#[cfg(unix)]
pub fn prepare(wanted: u64) -> Fds {
    use std::os::fd::AsRawFd;

    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    let limit = unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Fds { limit: None };
        }
        if lim.rlim_cur < lim.rlim_max {
            // The hard limit may be "unlimited", or more than the kernel allows a process
            // (macOS: kern.maxfilesperproc; Linux: fs.nr_open), and then setrlimit fails: try
            // the hard limit (up to a million), then just what this run needs.
            let wanted = libc::rlim_t::try_from(wanted).unwrap_or(libc::rlim_t::MAX);
            for cur in [lim.rlim_max.min(1 << 20), lim.rlim_max.min(wanted)] {
                let raised = libc::rlimit {
                    rlim_cur: cur,
                    rlim_max: lim.rlim_max,
                };
                if cur > lim.rlim_cur && libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim.rlim_cur = cur;
                    break;
                }
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
        let cur = lim.rlim_cur as u64;
        cur
    };
    let top = wanted.min(limit.saturating_sub(1));
    if top > 64
        && let Ok(null) = std::fs::File::open("/dev/null")
        && let Ok(top) = libc::c_int::try_from(top)
    {
        // SAFETY: F_DUPFD takes the lowest free descriptor at or above `top`, so none in use is
        // touched; the new one is closed at once.
        unsafe {
            let fd = libc::fcntl(null.as_raw_fd(), libc::F_DUPFD, top);
            if fd >= 0 {
                libc::close(fd);
            }
        }
    }
    Fds { limit: Some(limit) }
}

/// Not on this platform: nothing is changed.
#[cfg(not(unix))]
pub fn prepare(_wanted: u64) -> Fds {
    Fds { limit: None }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::prepare;

    /// The file table's size, from /proc (the "FDSize" line).
    fn fd_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn the_file_table_is_grown_and_the_limit_is_at_least_what_it_was() {
        let before = fd_size();
        let fds = prepare(before * 4);
        let limit = fds.limit.unwrap();
        assert!(
            fd_size() >= (before * 4).min(limit),
            "{} < {}",
            fd_size(),
            before * 4
        );
    }
}
