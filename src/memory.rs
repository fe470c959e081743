//! The process's memory policy (glibc): how many arenas the allocator keeps, and how an idle
//! agent hands back freed heap and the code pages it touched once.
//!
//! - Two arenas: glibc keeps one per thread and keeps freed memory mapped in each.
//! - [`give_back`] after each agent reconcile: `malloc_trim`, then `MADV_DONTNEED` on the
//!   read-only file mappings (the binary's code and constants, the C libraries') that hold no
//!   private page. Those pages stay in the page cache; they leave only this process's resident
//!   set, and the next reconcile maps the ones it needs again with minor faults (no disk read
//!   while the cache keeps them). A mapping with a private (copy-on-write) page, such as the
//!   relocated RELRO part, is never touched: dropping it would lose the relocations. Only the
//!   files mapped when the agent started ([`note_startup_files`]: the executable, the C
//!   libraries it links, the loader) are considered: they stay mapped at the same addresses for
//!   the process's life, so a range checked in smaps is still that mapping when `madvise` runs.
//!   A library loaded later (glibc's NSS modules, by a DNS lookup on another thread) could be
//!   mapped, relocated or unmapped meanwhile, and is never touched.

use std::sync::OnceLock;

/// The files mapped at the agent's start (see the module doc).
static STARTUP_FILES: OnceLock<Vec<String>> = OnceLock::new();

/// Remember which files are mapped now; call once, before any thread starts.
pub fn note_startup_files() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut files: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/'))
        .map(str::to_string)
        .collect();
    files.sort();
    files.dedup();
    let _ = STARTUP_FILES.set(files);
}

/// Set the allocator's parameters; call before any thread starts.
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hand freed heap memory and clean code pages back to the kernel (see the module doc).
pub fn give_back() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    let Some(files) = STARTUP_FILES.get() else {
        return;
    };
    if let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") {
        for (start, len) in clean_file_mappings(&smaps, files) {
            // SAFETY: the range is a whole read-only file mapping with no private page
            // (checked above), so dropping its pages loses nothing: every later access maps
            // the same file bytes again. It is never written (read-only) between the check and
            // the call.
            unsafe {
                libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
            }
        }
    }
}

/// The (start, length) of every mapping in `smaps` that is backed by one of `files`, not
/// writable, and holds no private copy-on-write page, neither in memory nor swapped out.
fn clean_file_mappings(smaps: &str, files: &[String]) -> Vec<(usize, usize)> {
    // Each mapping: its range when it is a read-only file mapping, and whether a private page
    // was seen in it.
    let mut blocks: Vec<(Option<(usize, usize)>, bool)> = Vec::new();
    for line in smaps.lines() {
        if let Some(range) = mapping_header(line, files) {
            blocks.push((range, false));
        } else if let (Some((field, kb)), Some(block)) = (line.split_once(':'), blocks.last_mut()) {
            // Not Private_Dirty: a file page can be dirty in the page cache (a binary just
            // written) and is still the file's; only anonymous pages are copies.
            let private = matches!(field, "Anonymous" | "Swap");
            if private && kb.trim().trim_end_matches("kB").trim() != "0" {
                block.1 = true;
            }
        }
    }
    blocks
        .into_iter()
        .filter(|(_, private)| !private)
        .filter_map(|(range, _)| range)
        .collect()
}

/// `Some(Some(range))` for the header of a read-only mapping of one of `files`, `Some(None)`
/// for any other mapping's header, `None` for a field line.
fn mapping_header(line: &str, files: &[String]) -> Option<Option<(usize, usize)>> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let (lo, hi) = range.split_once('-')?;
    let (lo, hi) = (
        usize::from_str_radix(lo, 16).ok()?,
        usize::from_str_radix(hi, 16).ok()?,
    );
    let perms = fields.next()?;
    let path = fields.nth(3);
    let read_only_file = perms.len() == 4
        && !perms.contains('w')
        && perms.ends_with('p')
        && path.is_some_and(|p| files.binary_search_by(|f| f.as_str().cmp(p)).is_ok());
    Some(read_only_file.then_some((lo, hi - lo)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0a0000000-55d0a0200000 r--p 00000000 fd:01 1234 /usr/bin/regmirror
Size:               2048 kB
Anonymous:             0 kB
55d0a0200000-55d0a0a00000 r-xp 00200000 fd:01 1234 /usr/bin/regmirror
Size:               8192 kB
Anonymous:             0 kB
55d0a0a00000-55d0a0a40000 r--p 00a00000 fd:01 1234 /usr/bin/regmirror
Size:                256 kB
Anonymous:           256 kB
55d0a0a41000-55d0a0a42000 r--p 00a41000 fd:01 1234 /usr/bin/regmirror
Anonymous:             0 kB
Swap:                  4 kB
55d0a0a40000-55d0a0a41000 rw-p 00a40000 fd:01 1234 /usr/bin/regmirror
Anonymous:             4 kB
55d0a1000000-55d0a1100000 rw-p 00000000 00:00 0 [heap]
Anonymous:          1024 kB
7f0000000000-7f0000001000 r--s 00000000 00:05 77 /memfd:x (deleted)
Anonymous:             0 kB
7f0000100000-7f0000200000 r-xp 00000000 fd:01 99 /usr/lib/libnss_late.so.2
Anonymous:             0 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
";

    #[test]
    fn only_read_only_private_file_mappings_without_private_pages() {
        let files = ["/memfd:x".to_string(), "/usr/bin/regmirror".to_string()];
        assert_eq!(
            clean_file_mappings(SMAPS, &files),
            vec![(0x55d0a0000000, 0x200000), (0x55d0a0200000, 0x800000)],
            "the relocated r--p parts (resident or swapped), writable, shared, anonymous, [vdso] and \
             later-loaded mappings are kept"
        );
    }

    #[test]
    fn the_running_process_has_its_code_among_them() {
        note_startup_files();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let code = clean_file_mappings(&smaps, STARTUP_FILES.get().unwrap());
        let here = only_read_only_private_file_mappings_without_private_pages as *const () as usize;
        assert!(
            code.iter().any(|(s, l)| (*s..s + l).contains(&here)),
            "this function's own code is in a clean mapping"
        );
        give_back();
        give_back();
    }
}
