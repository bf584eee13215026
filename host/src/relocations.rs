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
        let Some(pages) = whole_pages_of_table() else {
            return;
        };
        // SAFETY: the pages lie inside the executable's read-only, file-backed mapping;
        // MADV_DONTNEED there only drops page table entries, and a later read faults the
        // same bytes in from the file.
        let advised =
            unsafe { libc::madvise(pages.start as *mut c_void, pages.len(), libc::MADV_DONTNEED) };
        if advised != 0 {
            tracing::debug!(
                "relocation table kept resident: {}",
                std::io::Error::last_os_error()
            );
        }
    }

    /// The pages wholly inside the executable's `.rela.dyn` (its first and last pages hold
    /// other sections too).
    fn whole_pages_of_table() -> Option<Range<usize>> {
        let mut table: Option<Range<usize>> = None;
        // SAFETY: the callback only reads the program headers and dynamic section the loader
        // hands it, and writes `table`, which outlives the call.
        unsafe {
            libc::dl_iterate_phdr(Some(executable_table), (&raw mut table).cast());
        }
        let table = table?;
        let page = rustix::param::page_size();
        let start = table.start.next_multiple_of(page);
        let end = table.end / page * page;
        (start < end).then_some(start..end)
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

    #[cfg(test)]
    mod tests {
        use super::*;

        /// How many pages of `range` are in this process's page table (/proc/self/pagemap).
        fn present_pages(range: &Range<usize>) -> usize {
            use std::io::{Read, Seek, SeekFrom};
            let page = rustix::param::page_size();
            let count = range.len() / page;
            let mut pagemap = std::fs::File::open("/proc/self/pagemap").unwrap();
            pagemap
                .seek(SeekFrom::Start((range.start / page * 8) as u64))
                .unwrap();
            let mut entries = vec![0u8; count * 8];
            pagemap.read_exact(&mut entries).unwrap();
            entries
                .chunks_exact(8)
                .filter(|entry| u64::from_le_bytes((*entry).try_into().unwrap()) >> 63 == 1)
                .count()
        }

        fn read_table(pages: &Range<usize>) -> Vec<u8> {
            // SAFETY: the range is inside the executable's mapped, readable `.rela.dyn`.
            unsafe { std::slice::from_raw_parts(pages.start as *const u8, pages.len()) }.to_vec()
        }

        #[test]
        fn the_relocation_table_leaves_the_page_table_and_still_reads_the_same() {
            let pages = whole_pages_of_table().expect("this test binary is position-independent");
            let before = read_table(&pages);
            assert_eq!(
                present_pages(&pages),
                pages.len() / rustix::param::page_size()
            );

            release();

            assert_eq!(present_pages(&pages), 0, "the table's pages stayed mapped");
            assert_eq!(read_table(&pages), before);
        }
    }
}
