//! Keeping an attached console off the CPUs of the relay's workers.
//!
//! Measured (docs/BENCHMARKS.md, "Attached consoles on CPUs of their
//! own"): on a machine whose cores the relay's workers share with attached
//! consoles, the consoles' own drawing — not what the relay does for them
//! on its control socket — raises the data path's paced p99, whatever
//! their nice value or scheduling class. With the consoles on other CPUs
//! than the workers, two attached consoles change nothing. So where an
//! operator has pinned the relay (systemd `CPUAffinity=`, `taskset`) and
//! left a CPU free, the console moves itself there.

use std::path::Path;

use rustix::process::Pid;
use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

use crate::relay::WORKER_THREAD_PREFIX;

/// The CPUs the console was started on: where it may go, whichever relay
/// it follows. Taken once, before any move, so that after a hand-over to a
/// relay pinned elsewhere (or not at all) the console chooses again from
/// all of them rather than from where the first relay left it.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleCpus(CpuSet);

/// What [`ConsoleCpus::keep_off_the_relays`] did, for the console's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The console now runs on `console`, none of the relay's `workers`.
    Moved { console: String, workers: String },
    /// The console is back on all the CPUs it started on (`console`): the
    /// relay it now follows, its workers on `workers`, leaves it nothing to
    /// move away from or to.
    Back { console: String, workers: String },
    /// Nothing to do, and why.
    Left(String),
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placement::Moved { console, workers } => write!(
                f,
                "console moved to CPUs {console}, off the relay's workers' CPUs {workers}"
            ),
            Placement::Back { console, workers } => write!(
                f,
                "console back on CPUs {console}, all it started on (the relay's workers: CPUs {workers})"
            ),
            Placement::Left(why) => write!(f, "console's CPUs left as they are: {why}"),
        }
    }
}

impl ConsoleCpus {
    /// The CPUs this process may run on now.
    pub fn at_start() -> Result<Self, String> {
        sched_getaffinity(None)
            .map(Self)
            .map_err(|e| format!("the console's CPUs unknown: {e}"))
    }

    /// Moves every thread of this process to the CPUs it started on that
    /// none of the workers of the relay `pid` may use, when there are such
    /// CPUs and the workers do not already leave all of them free; back to
    /// all of them when the workers may use every one.
    pub fn keep_off_the_relays(&self, pid: u32) -> Placement {
        let Some(workers) = worker_cpus(Path::new(&format!("/proc/{pid}/task"))) else {
            return Placement::Left(format!(
                "no worker threads of the relay (pid {pid}) to read"
            ));
        };
        let now = match sched_getaffinity(None) {
            Ok(now) => now,
            Err(e) => return Placement::Left(format!("the console's CPUs unknown: {e}")),
        };
        let target = target(&self.0, &workers);
        let apart = target != self.0;
        if target == now {
            return Placement::Left(if apart {
                format!(
                    "already on CPUs {}, off the relay's workers' CPUs {}",
                    cpu_list(&target),
                    cpu_list(&workers)
                )
            } else if shares_any(&self.0, &workers) {
                format!(
                    "the relay's workers may run on every CPU the console may ({})",
                    cpu_list(&workers)
                )
            } else {
                format!(
                    "the relay's workers (CPUs {}) already leave the console's ({}) free",
                    cpu_list(&workers),
                    cpu_list(&self.0)
                )
            });
        }
        if let Err(e) = move_every_thread(&target) {
            // Not half moved: every thread back where it was.
            let _ = move_every_thread(&now);
            return Placement::Left(format!("could not move to CPUs {}: {e}", cpu_list(&target)));
        }
        if apart {
            Placement::Moved {
                console: cpu_list(&target),
                workers: cpu_list(&workers),
            }
        } else {
            Placement::Back {
                console: cpu_list(&target),
                workers: cpu_list(&workers),
            }
        }
    }
}

/// Where a console started on `started` belongs beside workers on
/// `workers`: the CPUs they leave free, or all of `started` when they leave
/// it nothing to keep off.
fn target(started: &CpuSet, workers: &CpuSet) -> CpuSet {
    cpus_left(started, workers).unwrap_or(*started)
}

/// The CPUs in `mine` outside `workers`: `None` when there are none (the
/// console shares the workers' CPUs whatever it does) or when `mine` has
/// none of the workers' (nothing to move away from).
fn cpus_left(mine: &CpuSet, workers: &CpuSet) -> Option<CpuSet> {
    let mut free = CpuSet::new();
    cpus_in(mine)
        .filter(|&cpu| !workers.is_set(cpu))
        .for_each(|cpu| free.set(cpu));
    (shares_any(mine, workers) && free.count() > 0).then_some(free)
}

fn shares_any(a: &CpuSet, b: &CpuSet) -> bool {
    cpus_in(a).any(|cpu| b.is_set(cpu))
}

/// The CPUs any worker thread of the process whose threads are listed in
/// `tasks` (`/proc/PID/task`) may run on; `None` without worker threads.
fn worker_cpus(tasks: &Path) -> Option<CpuSet> {
    let mut union = CpuSet::new();
    let mut found = false;
    for task in std::fs::read_dir(tasks).ok()?.flatten() {
        let is_worker = std::fs::read_to_string(task.path().join("comm"))
            .is_ok_and(|comm| comm.starts_with(WORKER_THREAD_PREFIX));
        let tid = task.file_name().to_str().and_then(|t| t.parse().ok());
        let Some(tid) = tid.filter(|_| is_worker).and_then(Pid::from_raw) else {
            continue;
        };
        if let Ok(cpus) = sched_getaffinity(Some(tid)) {
            found = true;
            cpus_in(&cpus).for_each(|cpu| union.set(cpu));
        }
    }
    found.then_some(union)
}

/// An affinity is a thread's on Linux: set it on every thread there is
/// (threads started later inherit it from the one starting them). A thread
/// started by one not yet moved could miss it, so the threads are listed
/// again until no new one appears. A thread that ended since the listing
/// (`ESRCH`) needs none.
fn move_every_thread(cpus: &CpuSet) -> std::io::Result<()> {
    let mut moved = Vec::new();
    for _ in 0..3 {
        let mut new = false;
        for task in std::fs::read_dir("/proc/self/task")?.flatten() {
            let tid = task.file_name().to_str().and_then(|t| t.parse().ok());
            let Some(tid) = tid.and_then(Pid::from_raw).filter(|t| !moved.contains(t)) else {
                continue;
            };
            match sched_setaffinity(Some(tid), cpus) {
                Ok(()) | Err(rustix::io::Errno::SRCH) => {}
                Err(e) => return Err(e.into()),
            }
            moved.push(tid);
            new = true;
        }
        if !new {
            break;
        }
    }
    Ok(())
}

/// The CPUs in `cpus`, lowest first.
fn cpus_in(cpus: &CpuSet) -> impl Iterator<Item = usize> + '_ {
    (0..CpuSet::MAX_CPU).filter(|&cpu| cpus.is_set(cpu))
}

/// `0-3,6` as `taskset -c` and `/proc/PID/status` write CPU lists.
fn cpu_list(cpus: &CpuSet) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for cpu in cpus_in(cpus) {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == cpu => *end = cpu,
            _ => ranges.push((cpu, cpu)),
        }
    }
    ranges
        .iter()
        .map(|&(start, end)| match end - start {
            0 => start.to_string(),
            _ => format!("{start}-{end}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn set(cpus: &[usize]) -> CpuSet {
        let mut s = CpuSet::new();
        cpus.iter().for_each(|&c| s.set(c));
        s
    }

    #[test]
    fn the_console_takes_the_cpus_the_workers_leave() {
        let free = cpus_left(&set(&[0, 1, 2, 3]), &set(&[0, 1])).unwrap();
        assert_eq!(cpu_list(&free), "2-3");
    }

    #[test]
    fn a_console_on_every_worker_cpu_or_on_none_stays_where_it_is() {
        // Unpinned workers: the console cannot get out of their way.
        assert!(cpus_left(&set(&[0, 1]), &set(&[0, 1])).is_none());
        // Already apart (the operator pinned both).
        assert!(cpus_left(&set(&[2, 3]), &set(&[0, 1])).is_none());
    }

    #[test]
    fn a_console_that_follows_another_relay_chooses_again_from_where_it_started() {
        let started = set(&[0, 1, 2, 3]);
        // The first relay pinned to 0-1: the console takes 2-3.
        assert_eq!(cpu_list(&target(&started, &set(&[0, 1]))), "2-3");
        // The relay after a hand-over pinned to 2-3: back to 0-1, not
        // stuck beside it on the 2-3 the first one left.
        assert_eq!(cpu_list(&target(&started, &set(&[2, 3]))), "0-1");
        // Not pinned at all: every CPU again.
        assert_eq!(cpu_list(&target(&started, &started)), "0-3");
    }

    #[test]
    fn cpu_lists_read_as_taskset_writes_them() {
        assert_eq!(cpu_list(&set(&[0, 1, 2, 5, 7, 8])), "0-2,5,7-8");
        assert_eq!(cpu_list(&set(&[3])), "3");
    }

    #[test]
    fn a_relay_that_is_gone_has_no_worker_cpus() {
        assert!(worker_cpus(Path::new("/nonexistent/task")).is_none());
    }
}
