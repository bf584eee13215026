//! The dynamic loader's relocation table of the `edge` binary, handed back after start.
//!
//! The binary is position-independent, so before `main` the loader reads its `.rela.dyn`
//! (about 2 MiB, mostly pointers in vtables and constant tables to adjust) and never reads
//! it again. Those pages stayed resident for the life of the node, a tenth of an idle
//! node's resident set. Dropping them from the node's page table is safe at any time: the
//! mapping is read-only and backed by the file, so a later read would fault the same bytes
//! back in. (Linking with packed relocations, `-z pack-relative-relocs`, would shrink the
//! table instead, but needs glibc 2.36 on the gateway.)

/// Drops the resident pages of the executable's relocation table; a no-op where the table
/// cannot be found or on other platforms.
pub fn release_relocation_table() {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
    linux::release();
}

#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[expect(
    unsafe_code,
    reason = "reading the loader's program headers and advising the kernel about our own pages"
)]
mod linux {
    use std::ffi::{c_int, c_void};
    use std::ops::Range;

    const DT_NULL: i64 = 0;
    const DT_RELA: i64 = 7;
    const DT_RELASZ: i64 = 8;

    /// One entry of the `PT_DYNAMIC` segment (`Elf64_Dyn`).
    #[repr(C)]
    struct Dynamic {
        tag: i64,
        value: u64,
    }

    pub(super) fn release() {
        let mut table: Option<Range<usize>> = None;
        // SAFETY: the callback only reads the program headers and dynamic section the loader
        // hands it, and writes `table`, which outlives the call.
        unsafe {
            libc::dl_iterate_phdr(Some(executable_table), (&raw mut table).cast());
        }
        let Some(table) = table else { return };
        let page = page_size();
        // Only whole pages of the table: its first and last pages hold other sections too.
        let start = table.start.next_multiple_of(page);
        let end = table.end / page * page;
        if end <= start {
            return;
        }
        // SAFETY: [start, end) lies inside the executable's read-only, file-backed mapping;
        // MADV_DONTNEED there only drops page table entries, and a later read faults the
        // same bytes in from the file.
        let advised =
            unsafe { libc::madvise(start as *mut c_void, end - start, libc::MADV_DONTNEED) };
        if advised != 0 {
            tracing::debug!(
                "relocation table kept resident: {}",
                std::io::Error::last_os_error()
            );
        }
    }

    fn page_size() -> usize {
        // SAFETY: sysconf has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size).unwrap_or(4096).max(4096)
    }

    /// Called for the executable first; records its `.rela.dyn` and stops the iteration.
    unsafe extern "C" fn executable_table(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        table: *mut c_void,
    ) -> c_int {
        // SAFETY: the loader passes a valid `dl_phdr_info` whose `dlpi_phdr` points at
        // `dlpi_phnum` program headers, and `table` is the `Option` passed in above.
        let (info, table) = unsafe { (&*info, &mut *table.cast::<Option<Range<usize>>>()) };
        if info.dlpi_phdr.is_null() {
            return 1;
        }
        // SAFETY: as above.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        let base = info.dlpi_addr as usize;
        let Some(dynamic) = headers.iter().find(|h| h.p_type == libc::PT_DYNAMIC) else {
            return 1;
        };
        let mut entry = (base + dynamic.p_vaddr as usize) as *const Dynamic;
        let (mut address, mut size) = (0usize, 0usize);
        loop {
            // SAFETY: the dynamic section is an array of entries ended by DT_NULL.
            let Dynamic { tag, value } = unsafe { entry.read() };
            match tag {
                DT_NULL => break,
                DT_RELA => address = value as usize,
                DT_RELASZ => size = value as usize,
                _ => {}
            }
            // SAFETY: not past DT_NULL, checked above.
            entry = unsafe { entry.add(1) };
        }
        if address != 0 && size != 0 {
            // glibc adjusts the entry to the load address on most targets; a link-time
            // address is below it.
            let start = if address < base {
                base + address
            } else {
                address
            };
            *table = Some(start..start + size);
        }
        1
    }
}
