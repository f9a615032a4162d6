//! Process-level chores: the data directory lock, core pinning, and signals.

/// Takes an exclusive lock on the data directory for the life of the process, so that two
/// brokers never write the same files. The kernel drops it when the process dies, even by
/// SIGKILL.
pub fn lock_data_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    // Kept open until exit: the lock lives as long as the fd.
    let fd = file.into_raw_fd();
    // SAFETY: fd is a valid descriptor owned by this process.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(std::io::Error::other(format!(
            "data directory {} is in use by another Warren process (lock {} is held)",
            dir.display(),
            path.display()
        )));
    }
    Ok(())
}

/// Pins the calling thread to the `id`-th core this process may run on.
pub fn pin_to_core(id: usize) {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity/setaffinity read and write it in place.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &allowed))
            .collect();
        if cpus.is_empty() {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus[id % cpus.len()], &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Blocks SIGINT/SIGTERM/SIGHUP in every thread (shards inherit the mask) so that only the
/// main thread receives them, synchronously, through sigwait.
pub fn block_signals() -> std::io::Result<libc::sigset_t> {
    // SAFETY: sigset manipulation on a local, then pthread_sigmask on the calling thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(set)
    }
}

/// Waits for one of the signals blocked by [`block_signals`].
pub fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is a valid, initialized sigset; sig is a valid out pointer.
    unsafe {
        libc::sigwait(set, &mut sig);
    }
    sig
}
