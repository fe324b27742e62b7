//! Runs a command under a seccomp allow-list, the way systemd applies a
//! unit's `SystemCallFilter=` where systemd is not PID 1 (as in CI):
//!
//!     hearth-seccomp-exec ALLOWED_FILE NOFILE UID:GID -- COMMAND [ARGS...]
//!
//! ALLOWED_FILE holds one system call name a line. Any other system call
//! kills the whole process with SIGSYS, as systemd's default action does;
//! calls of another architecture are killed too
//! (`SystemCallArchitectures=native`). NOFILE sets RLIMIT_NOFILE's soft and
//! hard limits first (capped at the current hard limit), as the unit's
//! `LimitNOFILE=` does. It then becomes UID:GID with no supplementary
//! groups, as `User=` and `Group=` do before the filter is applied. Names this
//! architecture does not know are skipped, as systemd skips them.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use libseccomp::{ScmpAction, ScmpFilterContext, ScmpSyscall};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(list), Some(nofile), Some(user), Some("--"), Some(program)) = (
        args.first(),
        args.get(1),
        args.get(2),
        args.get(3).map(String::as_str),
        args.get(4),
    ) else {
        eprintln!("usage: hearth-seccomp-exec ALLOWED_FILE NOFILE UID:GID -- COMMAND [ARGS...]");
        return ExitCode::from(64);
    };
    let Some((Ok(uid), Ok(gid))) = user
        .split_once(':')
        .map(|(u, g)| (u.parse::<libc::uid_t>(), g.parse::<libc::gid_t>()))
    else {
        eprintln!("hearth-seccomp-exec: UID:GID must be two numbers");
        return ExitCode::from(64);
    };
    let Ok(nofile) = nofile.parse::<u64>() else {
        eprintln!("hearth-seccomp-exec: NOFILE must be a number");
        return ExitCode::from(64);
    };
    let names = match std::fs::read_to_string(list) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("hearth-seccomp-exec: cannot read {list}: {e}");
            return ExitCode::from(66);
        }
    };
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write `lim` only. Without
    // CAP_SYS_RESOURCE the hard limit cannot rise: both limits become the
    // lower of NOFILE and the hard limit, equal, as LimitNOFILE= leaves them.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        let n = nofile.min(lim.rlim_max);
        lim = libc::rlimit {
            rlim_cur: n,
            rlim_max: n,
        };
    }
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        eprintln!(
            "hearth-seccomp-exec: setrlimit: {}",
            std::io::Error::last_os_error()
        );
        return ExitCode::from(71);
    }
    // SAFETY: plain system calls on integers; a null list for no groups.
    let switched = unsafe {
        libc::setgroups(0, std::ptr::null()) == 0 && libc::setgid(gid) == 0 && libc::setuid(uid) == 0
    };
    if !switched {
        eprintln!(
            "hearth-seccomp-exec: cannot become {uid}:{gid}: {}",
            std::io::Error::last_os_error()
        );
        return ExitCode::from(77);
    }
    let filter = (|| {
        let mut filter = ScmpFilterContext::new(ScmpAction::KillProcess)?;
        filter.set_ctl_nnp(true)?;
        for name in names.lines().map(str::trim).filter(|n| !n.is_empty()) {
            if let Ok(call) = ScmpSyscall::from_name(name) {
                filter.add_rule(ScmpAction::Allow, call)?;
            }
        }
        filter.load()?;
        Ok::<_, libseccomp::error::SeccompError>(())
    })();
    if let Err(e) = filter {
        eprintln!("hearth-seccomp-exec: cannot load the filter: {e}");
        return ExitCode::from(71);
    }
    let error = Command::new(program).args(&args[5..]).exec();
    eprintln!("hearth-seccomp-exec: cannot run {program}: {error}");
    ExitCode::from(71)
}
