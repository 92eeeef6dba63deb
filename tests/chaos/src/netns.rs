//! Network namespaces for partition tests: each [`Site`] is a namespace joined to the
//! test's (root) namespace by a veth pair, with a /30 from a documentation range
//! (192.0.2.0/24, 198.51.100.0/24; nothing else is ever addressed) that no address or
//! route of this machine overlaps (a machine may well sit on 192.0.2.0/24 itself,
//! as the one this suite was written on does).
//!
//! A partition is the namespace's end of the pair set down: the test's end loses its
//! carrier but keeps its route, so packets to the site are silently dropped (open
//! connections stall, new connections time out), as in a real partition; a heal sets
//! it up again. A guard route (`unreachable` for the site's /30, at a lower priority
//! than the link's own route) makes sure that, whatever happens to the link, traffic
//! for the site never falls through to the default route and leaves the machine.
//!
//! [`NetLab`] deletes every namespace and veth it created when dropped, also when the
//! test fails halfway; namespaces left by a test process that was SIGKILLed (its pid is
//! in their name) are removed by the next run.

use std::os::fd::AsRawFd;
use std::process::Command;

/// Priority of the guard routes (the link's own route has metric 0, so wins while up).
const GUARD_METRIC: &str = "4000";

/// The documentation ranges the sites' /30s are taken from.
const RANGES: [&str; 2] = ["198.51.100", "192.0.2"];

/// Runs `ip ARGS`; the error is its stderr.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One namespace and its link to the test.
#[derive(Debug, Clone)]
pub struct Site {
    /// Namespace name (`pgchaos-PID-LETTER`).
    pub ns: String,
    /// The veth end in the test's namespace.
    pub host_if: String,
    /// The test side's address.
    pub host_ip: String,
    /// The address inside the namespace (where its polygeard listens).
    pub ns_ip: String,
    /// The veth end inside the namespace.
    pub ns_if: String,
    /// The site's /30, e.g. `198.51.100.4/30`.
    pub subnet: String,
}

impl Site {
    /// The command prefix that runs a program inside the namespace.
    pub fn exec_prefix(&self) -> Vec<String> {
        ["ip", "netns", "exec", self.ns.as_str()]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
}

/// Namespaces and veths created by this test; all deleted on drop.
pub struct NetLab {
    /// The sites.
    pub sites: Vec<Site>,
    created_ns: Vec<String>,
    created_if: Vec<String>,
    created_routes: Vec<String>,
    /// Keep the /30s reserved against concurrent runs (flock).
    _locks: Vec<std::fs::File>,
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes namespaces a SIGKILLed earlier run left behind (its pid is gone).
fn remove_stale() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("pgchaos-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !pid_alive(pid) {
            eprintln!("[chaos] removing stale namespace {name} (its test process {pid} is gone)");
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Takes an exclusive lock on `/tmp/polygear-chaos-net-RANGE-K.lock` without waiting.
fn lock_subnet(range: &str, k: u32) -> Option<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("/tmp/polygear-chaos-net-{range}-{k}.lock"))
        .ok()?;
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    (rc == 0).then_some(f)
}

/// Whether any address or route of this machine overlaps `prefix.(4k)/30`: every
/// `a.b.c.d[/len]` word of `ip addr` / `ip route` output counts as a network.
fn subnet_in_use(prefix: &str, k: u32, addrs: &str, routes: &str) -> bool {
    let ours: std::net::Ipv4Addr = match format!("{prefix}.{}", 4 * k).parse() {
        Ok(a) => a,
        Err(_) => return true,
    };
    let ours = u32::from(ours);
    let overlaps = |word: &str| {
        let (a, len) = match word.split_once('/') {
            Some((a, l)) => (a, l.parse::<u32>().unwrap_or(32)),
            None => (word, 32),
        };
        let Ok(a) = a.parse::<std::net::Ipv4Addr>() else {
            return false;
        };
        // The two networks overlap iff they agree on the shorter prefix.
        let shorter = len.min(30);
        let mask = if shorter == 0 {
            0
        } else {
            u32::MAX << (32 - shorter)
        };
        (u32::from(a) & mask) == (ours & mask)
    };
    addrs
        .split_whitespace()
        .chain(routes.split_whitespace())
        .filter(|w| *w != "default")
        .any(overlaps)
}

impl NetLab {
    /// Creates `n` (1 or 2) sites; `Err(reason)` if this machine does not let us (no
    /// `ip`, not root, no netns support, no free documentation subnet): the caller
    /// skips with that reason.
    pub fn new(n: usize) -> Result<NetLab, String> {
        assert!((1..=2).contains(&n));
        ip(&["-V"])?;
        remove_stale();
        let pid = std::process::id();
        let addrs = ip(&["-o", "-4", "addr", "show"])?;
        let routes = ip(&["-4", "route", "show", "table", "all"]).unwrap_or_default();
        // Free /30s (no overlap with this machine's addresses and routes), each held
        // by a lock file against concurrent runs.
        let mut chosen: Vec<(String, u32, std::fs::File)> = Vec::new();
        'search: for range in RANGES {
            for i in 0..64 {
                let k = (pid + i) % 64;
                let Some(lock) = lock_subnet(range, k) else {
                    continue; // another run has it
                };
                // A guard route nobody holds the lock for was left by a killed run.
                let guard = format!("unreachable {range}.{}/30 ", 4 * k);
                let stale = routes.lines().any(|l| {
                    l.starts_with(&guard) && l.contains(&format!("metric {GUARD_METRIC}"))
                });
                if stale {
                    let subnet = format!("{range}.{}/30", 4 * k);
                    let _ = ip(&[
                        "route",
                        "del",
                        "unreachable",
                        &subnet,
                        "metric",
                        GUARD_METRIC,
                    ]);
                }
                let others: String = routes
                    .lines()
                    .filter(|l| !l.starts_with(&guard))
                    .collect::<Vec<_>>()
                    .join("\n");
                if subnet_in_use(range, k, &addrs, &others) {
                    continue;
                }
                chosen.push((range.to_string(), k, lock));
                if chosen.len() == n {
                    break 'search;
                }
            }
        }
        if chosen.len() < n {
            return Err(format!(
                "no {n} free /30s in 198.51.100.0/24 and 192.0.2.0/24 (this machine's addresses \
                 and routes overlap them)"
            ));
        }
        let mut lab = NetLab {
            sites: Vec::new(),
            created_ns: Vec::new(),
            created_if: Vec::new(),
            created_routes: Vec::new(),
            _locks: Vec::new(),
        };
        for (i, (range, k, lock)) in chosen.into_iter().enumerate() {
            lab._locks.push(lock);
            let letter = (b'a' + i as u8) as char;
            let site = Site {
                ns: format!("pgchaos-{pid}-{letter}"),
                host_if: format!("pgc{pid}{letter}h"),
                host_ip: format!("{range}.{}", 4 * k + 1),
                ns_ip: format!("{range}.{}", 4 * k + 2),
                ns_if: format!("pgc{pid}{letter}n"),
                subnet: format!("{range}.{}/30", 4 * k),
            };
            let ns_if = site.ns_if.clone();
            // The guard first: from now on nothing for this /30 takes the default route.
            ip(&[
                "route",
                "add",
                "unreachable",
                &site.subnet,
                "metric",
                GUARD_METRIC,
            ])?;
            lab.created_routes.push(site.subnet.clone());
            ip(&["netns", "add", &site.ns])?;
            lab.created_ns.push(site.ns.clone());
            ip(&[
                "link",
                "add",
                &site.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &ns_if,
            ])?;
            lab.created_if.push(site.host_if.clone());
            ip(&["link", "set", &ns_if, "netns", &site.ns])?;
            ip(&[
                "addr",
                "add",
                &format!("{}/30", site.host_ip),
                "dev",
                &site.host_if,
            ])?;
            ip(&["link", "set", &site.host_if, "up"])?;
            ip(&[
                "-n",
                &site.ns,
                "addr",
                "add",
                &format!("{}/30", site.ns_ip),
                "dev",
                &ns_if,
            ])?;
            ip(&["-n", &site.ns, "link", "set", &ns_if, "up"])?;
            ip(&["-n", &site.ns, "link", "set", "lo", "up"])?;
            lab.sites.push(site);
        }
        Ok(lab)
    }

    /// Cuts site `i` off silently: its end of the link goes down, packets to and from
    /// it are dropped.
    pub fn partition(&self, i: usize) {
        let s = &self.sites[i];
        ip(&["-n", &s.ns, "link", "set", &s.ns_if, "down"]).expect("partition");
    }

    /// Heals site `i`: its end of the link comes up again.
    pub fn heal(&self, i: usize) {
        let s = &self.sites[i];
        ip(&["-n", &s.ns, "link", "set", &s.ns_if, "up"]).expect("heal");
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        // Deleting one end of a veth deletes both; deleting the namespace too.
        for i in self.created_if.drain(..) {
            let _ = ip(&["link", "del", &i]);
        }
        for ns in self.created_ns.drain(..) {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("[chaos] could not delete namespace {ns}: {e}");
            }
        }
        for subnet in self.created_routes.drain(..) {
            if let Err(e) = ip(&[
                "route",
                "del",
                "unreachable",
                &subnet,
                "metric",
                GUARD_METRIC,
            ]) {
                eprintln!("[chaos] could not delete the guard route for {subnet}: {e}");
            }
        }
    }
}

/// Connects to `addr` from inside namespace `ns` (the socket belongs to that
/// namespace, so it keeps working while the namespace is cut off from the test's).
pub fn connect_in(ns: &str, addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpStream> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path)?;
        // SAFETY: setns on a namespace file we opened; it changes only this thread,
        // which ends right after connecting.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3))
    })
    .join()
    .map_err(|_| std::io::Error::other("connect thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::subnet_in_use;

    #[test]
    fn finds_addresses_inside_a_slash_30() {
        let addrs = "5: x inet 192.0.2.5/30 brd 192.0.2.7 scope global x";
        assert!(subnet_in_use("192.0.2", 1, addrs, ""));
        assert!(!subnet_in_use("192.0.2", 2, addrs, ""));
        assert!(subnet_in_use(
            "198.51.100",
            0,
            "",
            "198.51.100.0/30 dev y proto kernel"
        ));
        // A wider network covers every /30 in it.
        assert!(subnet_in_use("192.0.2", 40, "", "192.0.2.0/24 dev z"));
        assert!(!subnet_in_use("192.0.2", 40, "10.0.0.1/8 127.0.0.1/8", ""));
    }
}
