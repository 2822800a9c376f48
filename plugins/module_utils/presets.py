# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu-user magic/mask table, one row per architecture.

Values are byte-for-byte those of qemu's scripts/qemu-binfmt-conf.sh (the table
Debian's qemu-user-static ships in /usr/share/binfmts), all with offset 0.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

_ELF32LE = "\\x7fELF\\x01\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00"
_ELF32BE = "\\x7fELF\\x01\\x02\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00"
_ELF64LE = "\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00"
_ELF64BE = "\\x7fELF\\x02\\x02\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00"

# The masks ignore EI_OSABI/EI_ABIVERSION (byte 7) and accept ET_EXEC and ET_DYN.
_MASK_LE = "\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff"
_MASK_BE = "\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff"
_MASK_X86 = "\\xff\\xff\\xff\\xff\\xff\\xfe\\xfe\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff"
_MASK_PPC64LE = "\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfc\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\x00"
_MASK_BE_FC = "\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfc\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff"

# arch -> (magic, mask); offset is 0 for every row.
PRESETS = {
    "i386": (_ELF32LE + "\\x02\\x00\\x03\\x00", _MASK_X86),
    "x86_64": (_ELF64LE + "\\x02\\x00\\x3e\\x00", _MASK_X86),
    "arm": (_ELF32LE + "\\x02\\x00\\x28\\x00", _MASK_LE),
    "armeb": (_ELF32BE + "\\x00\\x02\\x00\\x28", _MASK_BE),
    "aarch64": (_ELF64LE + "\\x02\\x00\\xb7\\x00", _MASK_LE),
    "aarch64_be": (_ELF64BE + "\\x00\\x02\\x00\\xb7", _MASK_BE),
    "riscv32": (_ELF32LE + "\\x02\\x00\\xf3\\x00", _MASK_LE),
    "riscv64": (_ELF64LE + "\\x02\\x00\\xf3\\x00", _MASK_LE),
    "ppc": (_ELF32BE + "\\x00\\x02\\x00\\x14", _MASK_BE_FC),
    "ppc64": (_ELF64BE + "\\x00\\x02\\x00\\x15", _MASK_BE_FC),
    "ppc64le": (_ELF64LE + "\\x02\\x00\\x15\\x00", _MASK_PPC64LE),
    "s390x": (_ELF64BE + "\\x00\\x02\\x00\\x16", _MASK_BE_FC),
    "m68k": (_ELF32BE + "\\x00\\x02\\x00\\x04", _MASK_BE),
    "sparc64": (_ELF64BE + "\\x00\\x02\\x00\\x2b", _MASK_BE_FC),
    "mips64el": (_ELF64LE + "\\x02\\x00\\x08\\x00",
                 "\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xfe\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff"),
}

ARCHES = sorted(PRESETS)


def preset(arch):
    """Return (magic, mask, offset) for arch, as escaped strings; KeyError if unknown."""
    magic, mask = PRESETS[arch]
    return magic, mask, 0
