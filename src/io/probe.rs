//! Whether this process may use io_uring, and if not, why and how to fix it.

/// None when io_uring works here; otherwise one line with the cause and the fix.
pub fn uring_refusal() -> Option<String> {
    // SAFETY: io_uring_setup with one entry and zeroed params; the returned fd is closed.
    let fd = unsafe {
        let mut params = [0u8; 120];
        libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr())
    };
    if fd >= 0 {
        // SAFETY: fd was just returned by io_uring_setup and is owned here.
        unsafe { libc::close(fd as i32) };
        return None;
    }
    let err = std::io::Error::last_os_error();
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    Some(format!(
        "io_uring is unavailable ({err}; kernel.io_uring_disabled={disabled}): run \
         `sysctl -w kernel.io_uring_disabled=0`, or in a container allow the io_uring_setup, \
         io_uring_enter and io_uring_register syscalls in its seccomp profile \
         (tuning/seccomp/), or start with --io epoll"
    ))
}
