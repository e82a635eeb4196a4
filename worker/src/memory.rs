//! Keeping the worker's resident memory flat over a long life.
//!
//! The worker is a long-running process whose work comes in bursts of
//! different sizes: a housekeeping round reads every workspace on the host, a
//! job reads its agent's output. glibc's allocator keeps the pages such a
//! burst used, spread over one arena per thread that ever contended, so the
//! resident size creeps up with the largest burst seen on any thread. Two
//! arenas are enough for a worker (its hot paths are async and short), and
//! after a burst the freed pages go back to the kernel.

/// Caps glibc's malloc arenas at two. Call before the async runtime starts
/// its threads.
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Gives the allocator's free pages back to the kernel (`malloc_trim`):
/// after a housekeeping round and after each job.
pub fn give_back() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
