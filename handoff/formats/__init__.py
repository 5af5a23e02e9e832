"""The container formats a record travels in, each defined once and read without trust.

- ``blob``: the random-access bytes every reader takes (``Blob``, ``read_exact``).
- ``elfcore``: ELF core files (vmcores): headers, program headers, notes; never PT_LOAD data.
- ``kdump``: makedumpfile's kdump-compressed and flattened dumps: headers and note areas.
- ``dumpformat``: which of those a dump is, from its first bytes.
- ``cpio``: newc archives as the kernel's initramfs unpacker reads them; a reader and a writer.
- ``vmcoreinfo``: the kernel's KEY=VALUE self-description in every vmcore.
- ``region``: the two-slot region header (spec/format.md §7).

Finding records in these containers, by content, is ``handoff.sources``' job.
"""
